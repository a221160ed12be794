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

-- t.wait_until(condition, seconds) evaluates a boolean SQL expression every
-- 50 ms until it is true (returns true) or the seconds have passed (returns
-- false): the one wait loop of the regression files (each evaluation sees
-- what committed before it, as a new statement does)
CREATE FUNCTION t.wait_until(cond text, seconds integer DEFAULT 30) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    ok boolean;
BEGIN
    FOR i IN 1..seconds * 20 LOOP
        EXECUTE 'SELECT (' || cond || ')' INTO ok;
        IF ok THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END $$;

\dx+ eventsource
\d eventsource.events
\d eventsource.snapshots
\d eventsource.checkpoints
\d eventsource.streams

-- the library is preloaded in this suite
SHOW shared_preload_libraries;
SELECT eventsource.head_position();
