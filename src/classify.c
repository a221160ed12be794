/*-------------------------------------------------------------------------
 *
 * classify.c
 *	  What a handler failure's SQLSTATE means: a category and a severity.
 *
 *	  SQLSTATE                        category        severity
 *	  40001 40P01 55P03 57014 08xxx   transient       low
 *	  42xxx                           application     high
 *	  22xxx 23xxx P0001 (others P0)   application     medium
 *	  53xxx 58xxx XXxxx               infrastructure  critical
 *	  anything else                   unknown         medium
 *
 * Severities are compared by rank (low < medium < high < critical), never as
 * strings: eventsource.notify_min_severity = 'high' notifies high and
 * critical.  The README carries the same table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "subscription.h"

static bool
is_transient(const char *s)
{
	return strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 ||
		strcmp(s, "55P03") == 0 || strcmp(s, "57014") == 0 ||
		strncmp(s, "08", 2) == 0;
}

static bool
is_infrastructure(const char *s)
{
	return strncmp(s, "53", 2) == 0 || strncmp(s, "58", 2) == 0 ||
		strncmp(s, "XX", 2) == 0;
}

static bool
is_application(const char *s)
{
	return strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0 ||
		strncmp(s, "42", 2) == 0 || strncmp(s, "P0", 2) == 0;
}

const char *
es_error_category(const char *sqlstate)
{
	if (is_transient(sqlstate))
		return "transient";
	if (is_infrastructure(sqlstate))
		return "infrastructure";
	if (is_application(sqlstate))
		return "application";
	return "unknown";
}

const char *
es_error_severity(const char *sqlstate)
{
	if (is_transient(sqlstate))
		return "low";
	if (is_infrastructure(sqlstate))
		return "critical";
	if (strncmp(sqlstate, "42", 2) == 0)
		return "high";
	return "medium";
}

/* Rank of a severity name: 0 low .. 3 critical, -1 for anything else. */
int
es_severity_rank(const char *severity)
{
	static const char *const names[] = {"low", "medium", "high", "critical"};

	for (int i = 0; i < lengthof(names); i++)
		if (strcmp(severity, names[i]) == 0)
			return i;
	return -1;
}
