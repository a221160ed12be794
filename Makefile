# eventsource: PGXS build.  See README.md for the commands that set up a
# machine, run the demo and run every test.

MODULE_big = eventsource
OBJS = \
	src/append.o \
	src/bookkeeping.o \
	src/checkpoint.o \
	src/cleanup.o \
	src/classify.o \
	src/current_event.o \
	src/dead_letter_retry.o \
	src/delivery.o \
	src/erasure.o \
	src/extversion.o \
	src/guard.o \
	src/guc.o \
	src/handler.o \
	src/horizon.o \
	src/horizon_blockers.o \
	src/init.o \
	src/json.o \
	src/launcher.o \
	src/lifecycle.o \
	src/read.o \
	src/registry.o \
	src/retention.o \
	src/shmem.o \
	src/snapshot.o \
	src/spi.o \
	src/stats.o \
	src/status.o \
	src/stream.o \
	src/subscription.o \
	src/subscription_rules.o \
	src/tenant.o \
	src/tenant_admin.o \
	src/tenant_stats.o \
	src/otlp.o \
	src/otlp_queue.o \
	src/trace.o \
	src/utility_hook.o \
	src/validate.o \
	src/wait_for_subscription.o \
	src/worker.o \
	src/worker_config.o

EXTENSION = eventsource
DATA = eventsource--1.0.sql eventsource--1.0--1.1.sql
PGFILEDESC = "eventsource - event store inside PostgreSQL"

# The release: the control file's default_version is the version of the SQL
# objects this library is built for (src/eventsource.h, ES_LIBRARY_VERSION);
# the PGXN distribution is that version with a patch level (META.json).
ES_VERSION := $(shell sed -n "s/^default_version = '\([0-9.]*\)'.*/\1/p" $(dir $(lastword $(MAKEFILE_LIST)))eventsource.control)
ifeq ($(ES_VERSION),)
$(error eventsource.control has no default_version of the form 'major.minor': the library would not know its own version)
endif
ES_DIST_VERSION = $(ES_VERSION).0
PG_CPPFLAGS += -DES_LIBRARY_VERSION='"$(ES_VERSION)"'

# Warnings are errors in CI (scripts/test.sh sets ES_WERROR=1).
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers
ifeq ($(ES_WERROR),1)
PG_CFLAGS += -Werror
endif

# `make installcheck` runs pg_regress and the isolation specs against the
# running server PGHOST/PGPORT name, which needs the settings of test/pg.conf
# (README, Tests); the TAP tests start their own servers.  With
# ES_TEMP_INSTANCE=1 (scripts/test.sh) each of the two gets a private server
# configured by test/pg.conf instead, so nothing must be running.
#
# pg_regress: the SQL surface.
REGRESS = core_setup append read snapshot checkpoint errors subscription_api hostile monitoring \
	monitoring_lag subscription_rules tracing lifecycle erasure retention tenancy tenant_stats \
	tenancy_lifecycle tenancy_subscriptions

# isolation specs: concurrent transactions.
ISOLATION = append_conflict append_any horizon_order horizon_abort \
	horizon_unrelated idempotent_retry lifecycle_append_race lifecycle_reader \
	lifecycle_snapshot_race lifecycle_repeatable_read \
	erasure_snapshot_race erasure_append_race erasure_snapshot_locks tenant_append \
	tenant_lifecycle
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso

ifeq ($(ES_TEMP_INSTANCE),1)
REGRESS_OPTS += --temp-instance=tmp_check_regress --temp-config=test/pg.conf
ISOLATION_OPTS += --temp-instance=tmp_check_iso --temp-config=test/pg.conf
endif

# TAP: processes, crashes, restarts.
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

# the OTLP exporter's HTTP client (Debian: libcurl4-openssl-dev)
SHLIB_LINK += -lcurl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# the TAP tests' shared helpers (test/perl/EsTest.pm)
PG_PROVE_FLAGS += -I $(srcdir)/test/perl

# Every file includes the project's headers; a change to one rebuilds all
# (and a new default_version, which the headers take from the control file).
$(OBJS): src/eventsource.h src/subscription.h src/trace.h src/schema.h \
	src/subscription_rules.h src/upcalls.h src/worker.h src/tenant.h \
	eventsource.control

# The release archives for PGXN and packagers, from the committed tree (HEAD):
# eventsource-X.Y.Z.zip and .tar.gz with the top directory eventsource-X.Y.Z/.
# X.Y.Z is default_version plus a patch level, as in META.json (the release
# test, test/t/041_release.pl, checks that they agree).  .gitattributes
# leaves CI files out.
ES_DIST = eventsource-$(ES_DIST_VERSION)
dist:
	git archive --format=zip --prefix=$(ES_DIST)/ -o $(ES_DIST).zip HEAD
	git archive --format=tar.gz --prefix=$(ES_DIST)/ -o $(ES_DIST).tar.gz HEAD
.PHONY: dist
