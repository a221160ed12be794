/*
 * eventsource--1.0--1.1.sql: from the released 1.0 to 1.1.
 *
 * 1.0 is frozen: eventsource--1.0.sql stays byte for byte what 1.0 users
 * installed.  Every change to the SQL surface or the schema goes here (and,
 * after 1.1 is released, into eventsource--1.1--1.2.sql).  A fresh
 * CREATE EXTENSION runs 1.0 then this script, so a fresh 1.1 and an updated
 * 1.0 are the same by construction; the upgrade walk test
 * (test/t/040_upgrade.pl) checks it.
 *
 * Rules for this file: every name schema-qualified; no table rewrite of
 * eventsource.events unless the release notes say so with its time on 10M
 * events; each section says which issue it serves and which table locks it
 * takes (README.md, "Upgrading", lists them).  All the rules, and how the C
 * library serves 1.0 and 1.1 at once: CONTRIBUTING.md.
 */

\echo Use "ALTER EXTENSION eventsource UPDATE TO '1.1'" to load this file. \quit
