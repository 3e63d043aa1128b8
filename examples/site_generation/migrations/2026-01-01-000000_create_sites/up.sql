-- Tables are created in the first schema of the connection's search_path: the example picks a
-- schema per run (or the one given with --schema), so runs never share rows.
CREATE TABLE sites (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    page_count INTEGER NOT NULL,
    pages_written INTEGER NOT NULL DEFAULT 0,
    generations INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE pages (
    site_id BIGINT NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    page_no INTEGER NOT NULL,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    checksum BIGINT NOT NULL,
    PRIMARY KEY (site_id, page_no)
);
