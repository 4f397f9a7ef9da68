# sdflow: build, install and uninstall (scripts/install.sh does the work).
#
#   make                                  build the release binary (.build/release/sdflow)
#   make install [PREFIX=/usr/local]      install the binary, its data, completions and man page
#   make uninstall [PREFIX=/usr/local]    remove exactly what `make install` installed
#   make deb                              build sdflow_VERSION_amd64.deb (scripts/build-deb.sh)
#   make test                             run the tests (scripts/test.sh)
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: build install uninstall deb test
build:
	swift build -c release --product sdflow
install:
	scripts/install.sh --prefix "$(PREFIX)" $(if $(DESTDIR),--destdir "$(DESTDIR)")
uninstall:
	scripts/install.sh --prefix "$(PREFIX)" --uninstall
deb:
	scripts/build-deb.sh
test:
	scripts/test.sh
