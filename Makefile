SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help install run test lint bench clean distclean

help:
	@echo "make run      install, migrate, load the demo, serve http://127.0.0.1:\$${PORT:-8000} with the Celery worker and beat"
	@echo "make test     install and run the test suite (extra pytest arguments: PYTEST_ARGS=...)"
	@echo "make lint     ruff check and ruff format --check"
	@echo "make bench    install and run bench/run.py"
	@echo "make install  .venv from requirements.txt and node_modules from package-lock.json (only when they changed)"
	@echo "make clean    remove collected static files and caches (distclean: also .venv, node_modules, var/)"

$(PY):
	python3 -m venv $(VENV)

# Stamp files: reinstall only when the requirements or the lockfile are newer than the last install.
$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

node_modules/.installed: package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: $(VENV)/.installed node_modules/.installed

# The demo's outside systems (Salesforce, HubSpot, Zendesk, a REST portal, an LLM) are local stand-ins on
# DOORSTEP_STANDINS_PORT (8025, +1, +2), allow-listed for outbound calls; the demo connects to them.
# The worker and beat run in the background, gunicorn beside them; when any one of them stops, or on
# Ctrl-C/TERM, the trap stops the others (KILL after 10 s: the filesystem broker can hang a warm shutdown),
# so no orphan keeps consuming the broker. Every process shares
# PROMETHEUS_MULTIPROC_DIR, so /metrics sums the web workers and the Celery worker.
run: install
	@set -euo pipefail; \
	var_dir="$${DOORSTEP_VAR_DIR:-var}"; \
	export DOORSTEP_STANDINS_PORT="$${DOORSTEP_STANDINS_PORT:-8025}"; \
	export DOORSTEP_OUTBOUND_ALLOWLIST="$${DOORSTEP_OUTBOUND_ALLOWLIST:-127.0.0.1}"; \
	$(PY) manage.py migrate --noinput; \
	$(PY) manage.py load_demo --if-empty; \
	$(PY) manage.py collectstatic --noinput -v0; \
	export PROMETHEUS_MULTIPROC_DIR="$${PROMETHEUS_MULTIPROC_DIR:-$$var_dir/prometheus}"; \
	mkdir -p "$$PROMETHEUS_MULTIPROC_DIR"; \
	rm -f "$$PROMETHEUS_MULTIPROC_DIR"/*.db; \
	if [ -n "$${DEMO_PASSWORD:-}" ]; then demo_pw="(from DEMO_PASSWORD)"; \
	elif [ -f "$$var_dir/demo_password" ]; then demo_pw="$$(cat "$$var_dir/demo_password")"; \
	else demo_pw="(not found: see the load_demo output above)"; fi; \
	echo "Demo accounts admin, governance, reviewer, executive, integrator; password: $$demo_pw"; \
	echo "Serving http://127.0.0.1:$${PORT:-8000}/ (Ctrl-C stops the web server, the worker and beat)"; \
	pids=""; \
	cleanup() { \
		trap - EXIT INT TERM; [ -n "$$pids" ] || return 0; kill $$pids 2>/dev/null || true; \
		for _ in $$(seq 20); do kill -0 $$pids 2>/dev/null || break; sleep 0.5; done; \
		kill -KILL $$pids 2>/dev/null || true; wait || true; \
	}; \
	trap cleanup EXIT; \
	trap 'exit 130' INT; \
	trap 'exit 143' TERM; \
	$(PY) -m standins --port "$$DOORSTEP_STANDINS_PORT" --tls-dir "$$var_dir/standins-tls" \
		--mirror "$$var_dir/demo/sources.sqlite3" >/dev/null & pids="$$pids $$!"; \
	$(VENV)/bin/celery -A config worker -l info --concurrency 2 & pids="$$pids $$!"; \
	$(VENV)/bin/celery -A config beat -l info & pids="$$pids $$!"; \
	$(VENV)/bin/gunicorn config.wsgi -c config/gunicorn.py -b 127.0.0.1:$${PORT:-8000} -w 2 --access-logfile - & \
	pids="$$pids $$!"; \
	status=0; wait -n || status=$$?; \
	echo "a process stopped (exit $$status); stopping the others" >&2; \
	exit $$status

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: install
	$(PY) bench/run.py

clean:
	rm -rf staticfiles .pytest_cache .ruff_cache test-results var/prometheus
	find . -path ./.venv -prune -o -path ./node_modules -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules var
