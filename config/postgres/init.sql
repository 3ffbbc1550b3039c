-- Run once by the postgres image when it creates its data directory
-- (mounted into /docker-entrypoint-initdb.d/ by docker-compose.yml).
-- The demo database, owned by a group role: the aws-standin service makes every IAM user it
-- issues (IAM:alice, IAMR:demo-role) a member of `demo` (--member-of demo), so they can work in
-- `dev`. The same two statements as in scripts/demo.
CREATE ROLE demo NOLOGIN;
CREATE DATABASE dev OWNER demo;
