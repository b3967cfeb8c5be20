DROP TABLE IF EXISTS transcript_segments;
DROP TABLE IF EXISTS transcripts;
