# The two commands of the README:
#   make demo   opens the TUI on a new session of configs/default.toml
#   make test   runs every test
# Both first run scripts/setup.sh, which finds or installs torch 2.11.0.

.PHONY: demo test setup build
setup:
	@./scripts/setup.sh

build: setup
	cargo build --release

demo: build
	./target/release/meltr-tui

test: setup
	@./scripts/test-deps.sh
	cargo test --all-targets --no-fail-fast -- --test-threads=2
