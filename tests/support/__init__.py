"""The test harness: servers, processes, the console script, the dashboard, and builders the tests share."""
