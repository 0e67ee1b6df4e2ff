-- The KeyPackage directory (mimi-ds wire-format.md §14.4): one row per connection token,
-- filed under RefHash("MIMIMI DirectoryIndex", token), holding its sets as one versioned
-- value; and every user pseudonym (hashed) any set ever used, so none comes back.
CREATE TABLE mimi_ds_directory_account (
    directory_index bytea NOT NULL PRIMARY KEY,
    version bigint NOT NULL,
    account bytea NOT NULL
);
CREATE TABLE mimi_ds_directory_pseudonym (
    pseudonym_hash bytea NOT NULL PRIMARY KEY
);
