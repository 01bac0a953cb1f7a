# Shortcuts; the scripts are the source of truth.
.PHONY: run test lint bench setup
run:
	scripts/run.sh
test:
	scripts/test.sh
lint:
	.venv/bin/ruff check . && .venv/bin/yamllint . && .venv/bin/ansible-lint --profile production
bench:
	.venv/bin/python -m bench
setup:
	scripts/setup.sh test
