# DMOD developer tasks. `make setup` once, then `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PROTOS := $(wildcard protos/dmod/v1/*.proto)
# buf breaking compares against the previous commit on main (or main itself on a branch).
BREAKING_AGAINST ?= .git\#ref=HEAD~1

.PHONY: setup protos check-protos lint test test-fast demo web bench clean chaos

# Installs on first use (and when the dependencies change).
$(VENV)/.setup-done: pyproject.toml setup.py clients/web/package-lock.json scripts/setup
	./scripts/setup

setup: $(VENV)/.setup-done

protos:
	$(BIN)/buf lint
	rm -rf clients/python/dmod/v1 clients/web/src/gen
	mkdir -p clients/python/dmod/v1
	$(PY) -m grpc_tools.protoc -Iprotos \
	  --python_out=clients/python --grpc_python_out=clients/python \
	  --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy --mypy_out=clients/python \
	  --plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc --mypy_grpc_out=clients/python \
	  $(PROTOS)
	printf '"""Generated gRPC/protobuf code for package dmod.v1 (make protos)."""\n' > clients/python/dmod/v1/__init__.py
	touch clients/python/dmod/v1/py.typed
	$(BIN)/buf generate

# Fails when generated code is stale, lint fails, or the contracts break compatibility.
check-protos: $(VENV)/.setup-done
	$(BIN)/buf lint
	@if git rev-parse -q --verify HEAD~1 >/dev/null && git show HEAD~1:buf.yaml >/dev/null 2>&1; then \
	  $(BIN)/buf breaking --against '$(BREAKING_AGAINST)'; fi
	$(MAKE) -s protos
	@git diff --exit-code --stat -- clients/python/dmod/v1 clients/web/src/gen || \
	  (echo "generated code is out of date: run make protos and commit" >&2; exit 1)
	@test -z "$$(git status --porcelain -- clients/python/dmod/v1 clients/web/src/gen)" || \
	  (git status --porcelain -- clients/python/dmod/v1 clients/web/src/gen; echo "untracked generated files" >&2; exit 1)

lint:
	$(BIN)/ruff check services clients/python tests bench

test: $(VENV)/.setup-done
	$(BIN)/pytest -q tests

# Faults and attacks on a real local stack (issue 16): 20 jobs under kill -9 of the services, a
# worker and an MPI rank, Redis and object-store restarts; fuzz (300 messages per RPC), the
# authorization matrix, a local-user probe, the worker privilege check. Writes
# bench/results/chaos.json (six counters, all 0 when nothing was lost, duplicated or leaked) and
# prints a table. CI runs the short version: tests/security/test_chaos_short.py.
chaos: $(VENV)/.setup-done
	$(PY) -m chaos.run

demo: $(VENV)/.setup-done
	$(BIN)/dmod up && $(BIN)/dmod demo

# The web UI bundle (clients/web/dist, not committed; served by `dmod up` on the gateway origin).
web:
	cd clients/web && npm run build && npm run check

clean:
	rm -rf build *.egg-info
