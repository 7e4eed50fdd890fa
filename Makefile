# Two commands on a fresh machine: `make demo` and `make test`. Everything else is set up on the way.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
AZURITE := dev/azurite/node_modules/.bin/azurite-blob
# Delta Lake for the tests' Spark (tests/spark.py; its DELTA_VERSION too): built against Spark 3.5.3,
# the pyspark in requirements-dev.txt. Its two jars (Scala and ANTLR, its other dependencies,
# come with pyspark) are copied from Maven Central into the venv, once.
DELTA_VERSION := 3.2.1
SPARK_JARS := $(VENV)/spark-jars
DELTA_JARS := $(SPARK_JARS)/delta-spark_2.12-$(DELTA_VERSION).jar $(SPARK_JARS)/delta-storage-$(DELTA_VERSION).jar
MVN_DEPENDENCY := org.apache.maven.plugins:maven-dependency-plugin:3.8.1
# Spark runs on Java 17; Debian's package when the machine has no java.
NEED_JAVA = command -v java >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }

.PHONY: setup lint test demo demo-backfill demo-entra soak bench clean

setup: $(VENV)/.installed $(AZURITE) $(DELTA_JARS)
	@$(NEED_JAVA)

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is needed as $(PYTHON)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Azurite at the exact version in dev/azurite/package-lock.json. Node.js and npm come from
# Debian's packages when the machine has none.
$(AZURITE): dev/azurite/package.json dev/azurite/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	cd dev/azurite && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Maven (Debian's package when the machine has none) copies one jar, without its dependencies.
$(SPARK_JARS)/%-$(DELTA_VERSION).jar:
	@$(NEED_JAVA)
	@command -v mvn >/dev/null || { apt-get update -qq && apt-get install -y -qq maven; }
	mvn -B -ntp $(MVN_DEPENDENCY):copy \
		-Dartifact=io.delta:$*:$(DELTA_VERSION):jar -DoutputDirectory=$(SPARK_JARS)
	test -s $@

# ruff's rules, ruff's formatter (check only: `.venv/bin/ruff format .` lays the code out) and mypy, as
# pyproject.toml sets them; part of `make test`.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: setup lint
	$(PY) -m pytest

demo: setup
	$(PY) -m shared.demo

# The demo's history copied by 4 queue workers (backfill partitions) instead of one timer run.
demo-backfill: setup
	$(PY) -m shared.demo --days 4 --backfill 4

# The same demo with the lake authenticated as in Azure: Azurite over HTTPS on a private CA in its
# Entra mode, and a local managed-identity endpoint (no key, no connection string for the bridge).
demo-entra: setup
	$(PY) -m shared.demo --days 4 --entra

# 50 consecutive runs with seeded random faults and deliveries, and the race scenario at 12 months
# for 2 minutes: about 40 minutes on 2 cores, most of it the 50 faulty runs' retry backoff; then a
# year of hourly deliveries into one table (a sync a day), checked against Direct Lake's bounds;
# then every crash point (each lake write of a run, killed before and after it).
# Each test is bounded at an hour.
soak: setup
	SOAK_RUNS=$${SOAK_RUNS:-50} RACE_MONTHS=$${RACE_MONTHS:-12} RACE_SECONDS=$${RACE_SECONDS:-120} \
		$(PY) -m pytest -q --timeout 3600 -m soak tests/test_soak.py
	TABLE_DAYS=$${TABLE_DAYS:-365} $(PY) -m pytest -q --timeout 3600 \
		tests/test_tables.py::test_hourly_deliveries_stay_within_direct_lake_bounds
	CRASH_POINTS=all $(PY) -m pytest -q --timeout 3600 -s tests/test_crash_points.py

# Throughput and memory against rclone (Debian's package) and a bare copy loop, the backfill row,
# the tables, the cold start, the signers against the SDKs', and the first run and the normal hour at cloud latency; writes
# bench/RESULTS.md. Never part of `make test`: about an hour.
bench: setup
	@command -v rclone >/dev/null || { apt-get update -qq && apt-get install -y -qq rclone; }
	$(PY) -m bench.run --profile
	$(PY) -m bench.backfill
	$(PY) -m bench.tables
	$(PY) -m bench.coldstart
	$(PY) -m bench.pieces
	$(PY) -m bench.latency --profile

clean:
	rm -rf $(VENV) dev/azurite/node_modules .pytest_cache .demo
