# mk/install.mk — `make install` and `make uninstall`.
#
# Included by the Makefile; it uses the Makefile's PROGRAMS ($(BUILD)/sluice,
# sluice-upstream, sluice-load) and its `all` target. Without the include:
#   make -f Makefile -f mk/install.mk install
#
#   make install                          into /usr/local
#   make install PREFIX=/usr              into /usr
#   make install DESTDIR=/tmp/pkg         staged, for packaging
#   make uninstall [PREFIX=...] [DESTDIR=...]
#
# Installs the three programs, the man page sluice(1), the docs and the
# example config. It never touches /etc: copy the example to
# /etc/sluice/config.json yourself (deploy/sluice.service reads it there).

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
DOCDIR  ?= $(PREFIX)/share/doc/sluice
INSTALL ?= install

SL_INSTALL_DOCS := docs/guide.md docs/design.md docs/reference.md

.PHONY: install uninstall
install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 docs/sluice.1 $(DESTDIR)$(MANDIR)/man1/sluice.1
	$(INSTALL) -m 0644 $(SL_INSTALL_DOCS) $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 examples/proxy_config.json $(DESTDIR)$(DOCDIR)/examples/proxy_config.json

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(PROGRAMS)))
	rm -f $(DESTDIR)$(MANDIR)/man1/sluice.1
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(SL_INSTALL_DOCS)))
	rm -f $(DESTDIR)$(DOCDIR)/examples/proxy_config.json
	rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true
