# The two commands a fresh machine needs:  make demo   and   make test
# Both create (or reuse) one virtual environment in $(VENV) through scripts/setup_env.sh.
VENV ?= .venv
SHELL := /bin/bash
PY := $(VENV)/bin/python
ENV := source scripts/ros_env.sh &&
STAMP := $(VENV)/.setup-stamp
# models/ is not one: the venv's share/bisenet_ros/models links to the folder, so a new or
# retrained model file needs no new set-up.
SETUP_INPUTS := setup.py setup.cfg package.xml scripts/setup_env.sh $(wildcard launch/* config/*.yaml config/train/*.yaml scripts/lib/*)

.PHONY: setup demo test test-run bench model clean

setup: $(STAMP)
$(STAMP): $(SETUP_INPUTS)
	VENV=$(VENV) bash scripts/setup_env.sh
	touch $@

demo: setup
	$(ENV) $(PY) -m bisenet_ros.demo

test: setup test-run

# The tests alone, with nothing installed: .ci/run calls this inside a loopback-only namespace.
test-run:
	$(ENV) $(PY) -m pytest -q -p no:cacheprovider test

bench: setup
	$(ENV) $(PY) -m bench.bench_backends

# Retrain the shipped model from scratch (about an hour on 2 CPU cores) and replace models/.
SHIPPED := models/bisenet_xception39_synthetic
model: setup
	$(ENV) $(PY) -m training.train --config config/train/synthetic_xception39.yaml
	cp runs/synthetic_xception39/best_model.pt $(SHIPPED).pt
	cp config/train/synthetic_xception39.yaml $(SHIPPED).yaml
	$(ENV) $(PY) -m training.export --model $(SHIPPED).pt --out $(SHIPPED).onnx --dynamic
	$(ENV) $(PY) -m training.export --model $(SHIPPED).pt --out $(SHIPPED)_int8.onnx \
	    --precision int8 --calib-images data/synthetic/train

clean:
	rm -rf $(VENV) build *.egg-info out
