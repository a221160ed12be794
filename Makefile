# eventsource: PGXS build.  See README.md for the commands that set up a
# machine, run the demo and run every test.

MODULE_big = eventsource
OBJS = \
	src/append.o \
	src/catalog.o \
	src/checkpoint.o \
	src/classify.o \
	src/guard.o \
	src/guc.o \
	src/handler.o \
	src/horizon.o \
	src/init.o \
	src/launcher.o \
	src/lifecycle.o \
	src/read.o \
	src/registry.o \
	src/shmem.o \
	src/snapshot.o \
	src/stats.o \
	src/status.o \
	src/stream.o \
	src/subscription.o \
	src/utility_hook.o \
	src/validate.o \
	src/worker.o

EXTENSION = eventsource
DATA = eventsource--1.0.sql eventsource--1.0--1.1.sql
PGFILEDESC = "eventsource - event store inside PostgreSQL"

# Warnings are errors in CI (scripts/test.sh sets ES_WERROR=1).
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers
ifeq ($(ES_WERROR),1)
PG_CFLAGS += -Werror
endif

# pg_regress: the SQL surface.  Each suite gets a private server with the
# library preloaded (test/pg.conf), so nothing must be running beforehand.
REGRESS = core_setup append read snapshot checkpoint errors subscription_api hostile monitoring lifecycle
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=test/pg.conf

# isolation specs: concurrent transactions.
ISOLATION = append_conflict append_any horizon_order horizon_abort \
	horizon_unrelated idempotent_retry lifecycle_append_race lifecycle_reader \
	lifecycle_snapshot_race
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso \
	--temp-instance=tmp_check_iso --temp-config=test/pg.conf

# TAP: processes, crashes, restarts.
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# the TAP tests' shared helpers (test/perl/EsTest.pm)
PG_PROVE_FLAGS += -I $(srcdir)/test/perl

# Every file includes the project's headers; a change to one rebuilds all.
$(OBJS): src/eventsource.h src/subscription.h
