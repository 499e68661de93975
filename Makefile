# Enclave. Every target bootstraps what it needs: `make demo` and `make test` on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv vllm-venv clean

venv: $(STAMP)

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# --no-deps: the lock is complete, and the resolver must never swap in a CUDA torch or torchvision.
$(STAMP): requirements.lock pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@# pip check, except unstructured-inference's model extras, which we leave out on purpose
	@! $(PY) -m pip check | grep -v -e '^No broken' -e '^unstructured-inference .* requires \(accelerate\|opencv-python\|timm\),'
	@! $(PY) -m pip show --quiet torchvision 2>/dev/null || { echo "error: torchvision is installed; it breaks transformers beside CPU torch"; exit 1; }
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/enclave demo

# The vLLM CPU server lives in its own venv (.venv-vllm): it pins its own torch and friends.
vllm-venv:
	PYTHON=$(PYTHON) deploy/vllm/make-cpu-venv.sh

test: $(STAMP) vllm-venv
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .venv-vllm var
