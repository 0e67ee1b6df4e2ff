-- The KeyPackage directory (mimi-ds wire-format.md §14.4): one row per connection token,
-- filed under RefHash("MIMIMI DirectoryIndex", token), holding its sets as one versioned
-- value; and every user pseudonym (hashed) any set ever used, so none comes back.
CREATE TABLE mimi_ds_directory_account (
    directory_index BLOB NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL,
    account BLOB NOT NULL
);
CREATE TABLE mimi_ds_directory_pseudonym (
    pseudonym_hash BLOB NOT NULL PRIMARY KEY
);
