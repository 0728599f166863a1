# Two commands: `make demo` and `make test`. Both create .venv and install the project when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
DEMO_FLAGS := --no-pretrained --image-size 128 --batch-size 8 --epoch-size 400 --log-every 10 --image-every 50 --viz-every 100

.PHONY: install demo test test-fast browser bench gpu-check docs clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,export,app]"
	touch $(STAMP)

# Stage 1 then stage 2 on the embedded sample photos, on CPU; then both evaluated on the held-out ones. Nothing
# downloads: a random ResNet body (--no-pretrained), LPIPS / FID only if their weights are cached (--no-download).
demo: $(STAMP)
	rm -rf runs/demo-pretrain runs/demo-gan runs/demo-eval runs/demo-curves checkpoints/demo-pretrain checkpoints/demo-gan
	$(BIN)/python pretrain_generator.py --name demo-pretrain --epochs 4 $(DEMO_FLAGS)
	$(BIN)/python train_gan.py --name demo-gan --init-generator checkpoints/demo-pretrain/best.pt --epochs 3 $(DEMO_FLAGS)
	$(BIN)/python evaluate.py --checkpoint checkpoints/demo-pretrain/best.pt --checkpoint checkpoints/demo-gan/best.pt \
		--data embedded:val --out runs/demo-eval --num-workers 1 --no-download --report
	$(BIN)/python -m gan_colorizer.inspect.curves --run runs/demo-pretrain --run runs/demo-gan --out runs/demo-curves
	@echo "demo done: TensorBoard with '$(BIN)/tensorboard --logdir runs'; sample grids in runs/demo-*/samples/;"
	@echo "evaluation in runs/demo-eval/ (summary.json, metrics.csv, grids/); open runs/demo-eval/report/index.html;"
	@echo "loss and validation curves in runs/demo-curves/"

# Every test: CI's command (.ci/run). test-fast leaves out the tiers marked slow and system (markers in setup.cfg).
test: $(STAMP) browser
	$(BIN)/python -m pytest

# The edit-test loop: under a minute on 2 cores. One pytest-xdist worker per core (at most 4: each holds its own torch)
# and one OpenMP thread each: on these tiny tensors a second thread only spins (measured side by side, two threads
# took 1.7x as long as one), while a second process halves the wall time. make test stays one process: its kills,
# signals, torchrun and memory measurements want the machine to themselves.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow and not system" -n auto --maxprocesses 4

# The report's browser test drives the Debian chromium (root, or sudo, and the Debian registry); no Python package
# downloads a browser.
browser:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)

# The first run on a lent GPU: training steps (bf16 / fp16 + scaler, eager / compiled, channels_last, SyncBatchNorm),
# the real data path against pure compute, evaluation, full-resolution colorizing, NCCL under torchrun with 2+ GPUs;
# stops at the first failure with one line, writes bench/results/gpu_check-cuda.json (docs/multi-gpu.md). Without
# CUDA: a dry run that says what it would measure and runs each check tiny.
gpu-check: $(STAMP)
	$(BIN)/python bench/gpu_check.py

# Each script prints a table and writes bench/results/NAME-DEVICE.json (about 21 minutes on the 2-core development CPU,
# plus about 40 for bench/scale.py, which keeps 4 GB of tiny JPEGs under /tmp/gan_colorizer_scale);
# then bench/tables.py regenerates docs/benchmarks.md's tables from them. Commit both.
bench: $(STAMP)
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/bf16_convergence.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/profile_step.py
	$(BIN)/python bench/eval_speed.py
	$(BIN)/python bench/colorize_speed.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/checkpoint_write.py
	$(BIN)/python bench/viz_cost.py
	$(BIN)/python bench/head_cost.py
	$(BIN)/python bench/engines.py
	$(BIN)/python bench/shards.py
	$(BIN)/python bench/video.py
	$(BIN)/python bench/published.py
	$(BIN)/python bench/generators.py
	$(BIN)/python bench/tables.py

# Rewrites the generated regions of docs/*.md: flag tables from the parsers, benchmark tables from bench/results/.
docs: $(STAMP)
	$(BIN)/python docs/generate.py

clean:
	rm -rf $(VENV) build *.egg-info
