--
-- core_setup: install the extension and the test helpers used by the other
-- files; show the objects the extension creates.
--
CREATE EXTENSION eventsource;

-- t.try(sql) runs a statement and reports 'ok' or 'SQLSTATE: message | detail'
CREATE SCHEMA t;
CREATE FUNCTION t.try(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || msg || coalesce(' | ' || nullif(det, ''), '');
END $$;

\dx+ eventsource
\d eventsource.events
\d eventsource.snapshots
\d eventsource.checkpoints
\d eventsource.streams

-- the library is preloaded in this suite
SHOW shared_preload_libraries;
SELECT eventsource.head_position();
