# Two commands on a fresh machine with Python 3.11 and make: `make run`, `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
# Every first-party plugin under plugins/ is its own distribution, installed beside crmkit.
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml examples/plugin-template/pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]" -e examples/plugin-template $(foreach plugin,$(PLUGINS),-e '$(plugin)[test]')
	touch $(STAMP)

# `make run PORT=8123`: a busy port is refused before anything is printed
run: $(STAMP)
	@CRMKIT_DEV_MODE=true $(BIN)/crmkit db upgrade >/dev/null
	@CRMKIT_DEV_MODE=true $(BIN)/crmkit demo --port $(PORT)
	CRMKIT_DEV_MODE=true $(BIN)/crmkit serve --host 127.0.0.1 --port $(PORT)

# crmkit's suite, then the plugin template's and each plugin's, each run on its own
# configuration as a plugin's tests are
test: $(STAMP)
	$(BIN)/pytest -q
	$(BIN)/pytest -q examples/plugin-template
	@for plugin in $(PLUGINS); do echo "== $$plugin"; $(BIN)/pytest -q $$plugin || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check crmkit tests bench examples/plugin-template .ci $(PLUGINS)
	$(BIN)/ruff format --check crmkit tests bench examples/plugin-template .ci $(PLUGINS)
	$(BIN)/mypy crmkit examples/plugin-template/crmkit_notes bench .ci/check_plugin_imports.py \
		$(patsubst %/__init__.py,%,$(foreach plugin,$(PLUGINS),$(wildcard $(plugin)/crmkit_*/__init__.py)))
	$(BIN)/python .ci/check_plugin_imports.py
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/hook_dispatch.py
	$(BIN)/python bench/graphql_customers.py
	$(BIN)/python bench/audit_overhead.py
	$(BIN)/python bench/event_pipeline.py
	$(BIN)/python bench/upkeep.py

clean:
	rm -rf $(VENV) .crmkit .pytest_cache .mypy_cache .ruff_cache
