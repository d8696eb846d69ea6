"""The live day without Dagster: the stream consumer (vendor WebSocket → landing zone), its
message parsing and dedup, and the feed simulator that speaks the vendor's protocol."""
