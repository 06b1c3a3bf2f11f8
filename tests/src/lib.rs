//! Integration tests of jetwire live in this package's `tests/` folder.
