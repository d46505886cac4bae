# Everything installs from a bare machine with python3: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test lint bench bench-long clean device-env firmware-test

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,device,dsp,dev]"
	rm -f $(VENV)/.installed-* && touch $@

demo: venv
	$(VENV)/bin/edgecnn demo --out out/demo

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint device-env firmware-test
	$(PY) -m pytest -q --ignore=tests/test_firmware.py --ignore=tests/test_firmware_mcu.py

# The generated C library: host build (gcc -std=c99 -Werror, ctypes) and Cortex-M4 build on QEMU
# (mps2-an386). Needs gcc, Debian's arm-none-eabi toolchain and qemu-system-arm (.ci/run installs
# them) and ../shared/third_party (or EDGECNN_THIRD_PARTY); here a missing tool fails, not skips.
# TFLM is built once into build/firmware (EDGECNN_FIRMWARE_BUILD), about 6 minutes on 2 cores.
firmware-test: venv
	EDGECNN_REQUIRE_FIRMWARE=1 $(PY) -m pytest -q tests/test_firmware.py tests/test_firmware_mcu.py

bench: venv
	$(PY) benchmarks/run_all.py

# The 24-hour simulated stream (about 6 minutes on an idle 2-core machine): kept out of `make bench`'s
# 10-minute budget. Its output goes to benchmarks/results/long_run.txt.
bench-long: venv
	$(PY) benchmarks/long_run.py | tee benchmarks/results/long_run.txt

# The device-only legacy stack: numpy < 2, tflite-runtime 2.14 (the last release; cp311 wheels, it
# fails to load under numpy 2) and this package without its training extra (no TensorFlow).
# tests/test_stream_device_env.py streams a bundle made in the main environment through it.
DEVICE_VENV := .venv-device
DEVICE_STAMP := $(DEVICE_VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

device-env: $(DEVICE_STAMP)

$(DEVICE_STAMP): pyproject.toml
	test -x $(DEVICE_VENV)/bin/python || $(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEVICE_VENV)/bin/python -m pip install --quiet "numpy>=1.26,<2" "tflite-runtime==2.14.0" -e .
	rm -f $(DEVICE_VENV)/.installed-* && touch $@

clean:
	rm -rf out .pytest_cache
