
-- KEYS: record, the partition's webhook stream.
-- ARGV: to, allowed (",a,b,"), event, callback task, callback job id, part, part event.
return transition(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
