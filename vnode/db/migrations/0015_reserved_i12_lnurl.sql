-- Placeholder on branch i12-limits only: migration numbers must run without gaps, and 0014
-- and 0015 belong to the other parts of issue 12. Drop this file when merging theirs.
SELECT 15;
