# The two commands of the README. Both create .venv from requirements.txt on first use (and again
# whenever requirements.txt or pyproject.toml changes); nothing needs to be activated.
#   make test   ruff, the unit tests and every chapter in the smoke profile (nbmake)
#   make book   execute every chapter in the tutorial profile and build _build/html/index.html
#   make clean  remove the built book and the tool caches (keeps .venv, data/ and results/)

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests run two pytest workers on two cores: one torch thread each (two threads each is ~5x slower).
# Jupyter kernels are started one at a time (tests marked xdist_group("kernels"), chapters serially):
# two kernels launched at once can race for the same ports and hang.
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

.PHONY: test book clean

# The kernel configuration silences ipykernel's "running over TCP without encryption" notice, printed at
# every notebook execution (jupyter-book, nbmake, papermill); see tools/ipython_kernel_config.py.
$(STAMP): requirements.txt pyproject.toml tools/ipython_kernel_config.py
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	install -D -m 644 tools/ipython_kernel_config.py $(VENV)/etc/ipython/ipython_kernel_config.py
	touch $@

# The tests write their run records to a temporary folder (DSTLIB_RESULTS), never to the user's results/.
# All three steps (ruff, pytest, nbmake) always run, whichever fails; the last line names the failed ones
# and the target fails if any did.
test: $(STAMP)
	@records=$$(mktemp -d) || exit 1; export DSTLIB_RESULTS=$$records; failed=""; \
	{ $(BIN)/ruff check . || failed="$$failed ruff"; } && \
	{ $(TEST_ENV) $(BIN)/pytest -n 2 --dist loadgroup tests || failed="$$failed pytest"; } && \
	{ $(BIN)/pytest --nbmake --nbmake-timeout=600 book || failed="$$failed nbmake"; }; \
	rm -rf $$records; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; echo "make test: ruff, pytest and nbmake passed"

# Before the build: every chapter carries its install cell (tools/install_cell.py), and the jupyter-cache
# is dropped when dstlib/ or requirements.txt changed since it was filled (tools/cache_key.py), so a
# library edit re-executes every chapter (the cache itself keys on the notebooks' code only). After it: the
# chapter timings, and a check that every page loads only files of the book (MathJax included) and
# links to no placeholder repository or dead launch button (tools/check_offline_html.py).
book: $(STAMP)
	$(BIN)/python tools/install_cell.py --check
	$(BIN)/python tools/cache_key.py
	$(BIN)/jupyter-book build . -W --keep-going
	$(BIN)/python tools/exec_times.py
	$(BIN)/python tools/check_offline_html.py _build/html

clean:
	rm -rf _build .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
