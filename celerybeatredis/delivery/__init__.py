"""Getting committed runs to the broker: delivery modes, messages, publishing, confirms, re-sends, backfill."""
