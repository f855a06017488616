# One command to start the service, one to test it (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 8000
LAUNCHER := tools/ferretdb-launcher/bin/ferretdb-launcher

.PHONY: run test install chromium cjkfont poppler zbar wrk ferretdb bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (Playwright drives the system browser;
# nothing is downloaded by Playwright itself).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-microhei; \
	  else echo "chromium missing: run 'sudo apt-get install chromium'" >&2; exit 1; fi; }

# A TrueType CJK font for the PDF 督办通报, found as the service finds it
# (SCORING_PDF_FONT, else scoring_service.reports.supervision.FONT_PATHS).
cjkfont: install
	@$(BIN)/python -c "from scoring_service.reports.supervision import find_font; find_font()" 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q fonts-wqy-microhei; \
	  else echo "no CJK font for the PDF reports: run 'sudo apt-get install fonts-wqy-microhei' or set SCORING_PDF_FONT" >&2; fi; }

# Poppler's pdftotext and pdftoppm: the tests read and render the PDF reports.
poppler:
	@command -v pdftoppm >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q poppler-utils; \
	  else echo "pdftoppm missing: run 'sudo apt-get install poppler-utils'" >&2; exit 1; fi; }

# zbar's zbarimg: the poster tests decode the QR code back from the rendered poster.
zbar:
	@command -v zbarimg >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q zbar-tools; \
	  else echo "zbarimg missing: run 'sudo apt-get install zbar-tools'" >&2; exit 1; fi; }

# wrk, the HTTP load generator of the POST and batch benchmarks (bench/wrk.py); without root, Debian's
# package and its LuaJIT are unpacked under tools/wrk, where bench/wrk.py finds them.
wrk:
	@command -v wrk >/dev/null 2>&1 || [ -x tools/wrk/usr/bin/wrk ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; \
	  else mkdir -p tools/wrk && cd tools/wrk && apt-get download wrk libluajit2-5.1-2 \
	    && for deb in *.deb; do dpkg-deb -x "$$deb" .; done; fi; }

# FerretDB (MongoDB wire protocol on SQLite) embedded in a tiny launcher, built
# from the Go module proxy and cached in tools/ferretdb-launcher/bin.
ferretdb: $(LAUNCHER)
$(LAUNCHER): tools/ferretdb-launcher/main.go tools/ferretdb-launcher/go.mod tools/ferretdb-launcher/go.sum
	@if command -v go >/dev/null 2>&1; then cd tools/ferretdb-launcher && go build -o bin/ferretdb-launcher . ; \
	 else echo "go not found: MongoDB tests need MONGODB_URI" >&2; fi

test: install chromium cjkfont poppler zbar ferretdb
	$(BIN)/pytest $(PYTEST_ARGS)

run: install cjkfont
	$(BIN)/scoring-service init
	$(BIN)/scoring-service seed shenyang-2018 --demo
	@TOKEN=$$($(BIN)/scoring-service keys create --role admin --name "make run" 2>/dev/null | tail -n 1); \
	echo ""; \
	echo "  管理员令牌 / admin token:  $$TOKEN"; \
	echo "  API:        http://$(HOST):$(PORT)/api/v1/   (docs: http://$(HOST):$(PORT)/docs)"; \
	echo "  Dashboard:  http://$(HOST):$(PORT)/dashboard"; \
	echo "  Kiosk:      http://$(HOST):$(PORT)/kiosk/heping-001"; \
	echo ""
	$(BIN)/scoring-service serve --host $(HOST) --port $(PORT) --workers 2

bench: install ferretdb wrk
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance tools/ferretdb-launcher/bin .pytest_cache
