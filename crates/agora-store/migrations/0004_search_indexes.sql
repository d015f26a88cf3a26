-- Refreshing a package's search document deletes its tag and category rows by
-- package id; without these indexes each refresh scanned both tables, which made
-- loading or syncing a large catalog quadratic (found by `cargo xtask bench`).
CREATE INDEX search_tags_package ON search_tags(package_id);
CREATE INDEX search_categories_package ON search_categories(package_id);
