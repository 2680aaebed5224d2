# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench serve sandbox clean

$(BIN)/ocgateway: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/ocgateway
	$(BIN)/ocgateway demo

# pytest exits 5 when it collected no tests: that is a failure here, not a pass. The services
# the tests need (redis-server, chromium, chromedriver) are installed first when missing.
test: $(BIN)/ocgateway
	@.ci/services
	@$(BIN)/pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "no tests were collected"; exit 1; fi; exit $$status

bench: $(BIN)/ocgateway
	$(BIN)/python bench/proxy.py
	$(BIN)/python bench/tracking.py
	$(BIN)/python bench/decisions.py
	$(BIN)/python bench/hooks.py

serve: $(BIN)/ocgateway
	$(BIN)/ocgateway serve

sandbox: $(BIN)/ocgateway
	$(BIN)/ocgateway sandbox

clean:
	rm -rf $(VENV) *.egg-info ocgateway.db* events.jsonl
