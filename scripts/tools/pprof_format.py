"""pprof_format.py - write (and read back) pprof's profile format: a gzip-compressed
protocol buffer of the message Profile in github.com/google/pprof/proto/profile.proto.

Standard library only: the encoder is the handful of protobuf wire rules the message
needs (varints, length-delimited fields, packed repeated integers); the decoder exists
so that tests can check what was written without Go installed.

    profile = Profile(sample_type=("threads", "count"))
    fn = profile.function("worker", filename="/src/w.c")
    loc = profile.location(address=0x401000, lines=[(fn, 92)], mapping=0)
    profile.sample([loc], [1], labels={"state": "S"}, num_labels={"tid": 1234})
    open("threads.pb.gz", "wb").write(profile.gzipped())
"""
import gzip

# Field numbers of profile.proto (pprof's, not ours: keep them as published).
PROFILE_SAMPLE_TYPE, PROFILE_SAMPLE, PROFILE_MAPPING, PROFILE_LOCATION = 1, 2, 3, 4
PROFILE_FUNCTION, PROFILE_STRING_TABLE, PROFILE_TIME_NANOS = 5, 6, 9
PROFILE_PERIOD_TYPE, PROFILE_PERIOD, PROFILE_COMMENT, PROFILE_DEFAULT_SAMPLE_TYPE = 11, 12, 13, 14
VALUE_TYPE_TYPE, VALUE_TYPE_UNIT = 1, 2
SAMPLE_LOCATION_ID, SAMPLE_VALUE, SAMPLE_LABEL = 1, 2, 3
LABEL_KEY, LABEL_STR, LABEL_NUM = 1, 2, 3
MAPPING_ID, MAPPING_START, MAPPING_LIMIT, MAPPING_OFFSET, MAPPING_FILENAME, MAPPING_BUILD_ID = 1, 2, 3, 4, 5, 6
MAPPING_HAS_FUNCTIONS, MAPPING_HAS_FILENAMES, MAPPING_HAS_LINE_NUMBERS, MAPPING_HAS_INLINE_FRAMES = 7, 8, 9, 10
LOCATION_ID, LOCATION_MAPPING_ID, LOCATION_ADDRESS, LOCATION_LINE = 1, 2, 3, 4
LINE_FUNCTION_ID, LINE_LINE = 1, 2
FUNCTION_ID, FUNCTION_NAME, FUNCTION_SYSTEM_NAME, FUNCTION_FILENAME = 1, 2, 3, 4

VARINT, LENGTH_DELIMITED = 0, 2


# ---- encoding ----

def varint(value):
    """A protobuf varint; negative int64 values take ten bytes (two's complement)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field, wire):
    return varint(field << 3 | wire)


def int_field(field, value):
    """An integer field; zero is the default and is left out, as protobuf does."""
    return _key(field, VARINT) + varint(value) if value else b""


def bool_field(field, value):
    return int_field(field, 1 if value else 0)


def bytes_field(field, data):
    return _key(field, LENGTH_DELIMITED) + varint(len(data)) + data


def packed_field(field, values):
    return bytes_field(field, b"".join(varint(v) for v in values)) if values else b""


class Profile:
    """One profile being built. Strings are interned into the string table (index 0 is
    the empty string, as the format requires); ids start at 1 (0 means "none")."""

    def __init__(self, sample_type, period_type=None, period=1, time_nanos=0, comments=()):
        self._strings = {"": 0}
        self._table = [""]
        self._samples, self._mappings, self._locations, self._functions = [], [], [], []
        self._function_ids = {}
        self.sample_type = sample_type
        self.period_type = period_type or sample_type
        self.period = period
        self.time_nanos = time_nanos
        self.comments = list(comments)

    def string(self, text):
        text = text or ""
        if text not in self._strings:
            self._strings[text] = len(self._table)
            self._table.append(text)
        return self._strings[text]

    def _value_type(self, pair):
        return int_field(VALUE_TYPE_TYPE, self.string(pair[0])) + int_field(VALUE_TYPE_UNIT, self.string(pair[1]))

    def mapping(self, start, limit, filename, build_id="", offset=0,
                has_functions=True, has_filenames=False, has_line_numbers=False, has_inline_frames=False):
        """Adds a mapping and returns its id."""
        mid = len(self._mappings) + 1
        self._mappings.append(
            int_field(MAPPING_ID, mid) + int_field(MAPPING_START, start) + int_field(MAPPING_LIMIT, limit)
            + int_field(MAPPING_OFFSET, offset) + int_field(MAPPING_FILENAME, self.string(filename))
            + int_field(MAPPING_BUILD_ID, self.string(build_id))
            + bool_field(MAPPING_HAS_FUNCTIONS, has_functions) + bool_field(MAPPING_HAS_FILENAMES, has_filenames)
            + bool_field(MAPPING_HAS_LINE_NUMBERS, has_line_numbers)
            + bool_field(MAPPING_HAS_INLINE_FRAMES, has_inline_frames))
        return mid

    def function(self, name, system_name=None, filename=""):
        """The id of the function (name, system name, file), added on first use."""
        key = (name, system_name or name, filename or "")
        if key not in self._function_ids:
            fid = len(self._functions) + 1
            self._function_ids[key] = fid
            self._functions.append(
                int_field(FUNCTION_ID, fid) + int_field(FUNCTION_NAME, self.string(key[0]))
                + int_field(FUNCTION_SYSTEM_NAME, self.string(key[1]))
                + int_field(FUNCTION_FILENAME, self.string(key[2])))
        return self._function_ids[key]

    def location(self, address, lines, mapping=0):
        """Adds a location and returns its id. lines: [(function id, line)], innermost first:
        the last one is the function the earlier ones were inlined into."""
        lid = len(self._locations) + 1
        body = int_field(LOCATION_ID, lid) + int_field(LOCATION_MAPPING_ID, mapping) + int_field(LOCATION_ADDRESS, address)
        for function_id, line in lines:
            body += bytes_field(LOCATION_LINE, int_field(LINE_FUNCTION_ID, function_id) + int_field(LINE_LINE, line))
        self._locations.append(body)
        return lid

    def sample(self, location_ids, values, labels=None, num_labels=None):
        """One sample: its stack (location ids, leaf first) and its values."""
        body = packed_field(SAMPLE_LOCATION_ID, location_ids) + packed_field(SAMPLE_VALUE, values)
        for key, value in (labels or {}).items():
            body += bytes_field(SAMPLE_LABEL, int_field(LABEL_KEY, self.string(key)) + int_field(LABEL_STR, self.string(value)))
        for key, value in (num_labels or {}).items():
            body += bytes_field(SAMPLE_LABEL, int_field(LABEL_KEY, self.string(key)) + int_field(LABEL_NUM, value))
        self._samples.append(body)

    def serialize(self):
        out = bytearray(bytes_field(PROFILE_SAMPLE_TYPE, self._value_type(self.sample_type)))
        for field, items in ((PROFILE_SAMPLE, self._samples), (PROFILE_MAPPING, self._mappings),
                             (PROFILE_LOCATION, self._locations), (PROFILE_FUNCTION, self._functions)):
            for item in items:
                out += bytes_field(field, item)
        period_type = self._value_type(self.period_type)
        comments = [self.string(c) for c in self.comments]  # interned before the table is written
        for text in self._table:  # every entry, the empty first one included
            out += bytes_field(PROFILE_STRING_TABLE, text.encode())
        out += int_field(PROFILE_TIME_NANOS, self.time_nanos)
        out += bytes_field(PROFILE_PERIOD_TYPE, period_type)
        out += int_field(PROFILE_PERIOD, self.period)
        out += packed_field(PROFILE_COMMENT, comments)
        return bytes(out)

    def gzipped(self):
        return gzip.compress(self.serialize(), mtime=0)


# ---- decoding (for tests) ----

def _read_varint(data, pos):
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(data):
    """[(field number, wire type, value)] of one message: an int for varints, bytes for
    length-delimited fields. Raises ValueError on malformed input."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _read_varint(data, pos)
        elif wire == LENGTH_DELIMITED:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            value, pos = data[pos:pos + length], pos + length
        else:
            raise ValueError(f"wire type {wire} is not used by profile.proto")
        out.append((field, wire, value))
    return out


def unpack(value):
    """A repeated integer field's values, packed (bytes) or not (int)."""
    if isinstance(value, int):
        return [value]
    values, pos = [], 0
    while pos < len(value):
        v, pos = _read_varint(value, pos)
        values.append(v)
    return values


def decode(blob):
    """A profile (gzipped or not) as plain dicts, names resolved through the string table:
    {"sample_type", "period_type", "period", "comments", "strings", "samples", "locations",
    "functions", "mappings"}."""
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    top = fields(blob)
    strings = [v.decode() for f, w, v in top if f == PROFILE_STRING_TABLE]

    def msg(data):
        d = {}
        for f, w, v in fields(data):
            d.setdefault(f, []).append(v)
        return d

    def one(d, f, default=0):
        return d.get(f, [default])[-1]

    def value_type(data):
        d = msg(data)
        return (strings[one(d, VALUE_TYPE_TYPE)], strings[one(d, VALUE_TYPE_UNIT)])

    doc = {"strings": strings, "samples": [], "locations": {}, "functions": {}, "mappings": {},
           "sample_type": [], "period": 0, "comments": []}
    for f, w, v in top:
        if f == PROFILE_SAMPLE_TYPE:
            doc["sample_type"].append(value_type(v))
        elif f == PROFILE_PERIOD_TYPE:
            doc["period_type"] = value_type(v)
        elif f == PROFILE_PERIOD:
            doc["period"] = v
        elif f == PROFILE_COMMENT:
            doc["comments"] += [strings[i] for i in unpack(v)]
        elif f == PROFILE_SAMPLE:
            d = msg(v)
            labels, num_labels = {}, {}
            for raw in d.get(SAMPLE_LABEL, []):
                label = msg(raw)
                key = strings[one(label, LABEL_KEY)]
                if LABEL_STR in label:
                    labels[key] = strings[one(label, LABEL_STR)]
                else:
                    num_labels[key] = one(label, LABEL_NUM)
            doc["samples"].append({
                "location_ids": [i for x in d.get(SAMPLE_LOCATION_ID, []) for i in unpack(x)],
                "values": [i for x in d.get(SAMPLE_VALUE, []) for i in unpack(x)],
                "labels": labels, "num_labels": num_labels})
        elif f == PROFILE_LOCATION:
            d = msg(v)
            lines = []
            for raw in d.get(LOCATION_LINE, []):
                line = msg(raw)
                lines.append((one(line, LINE_FUNCTION_ID), one(line, LINE_LINE)))
            doc["locations"][one(d, LOCATION_ID)] = {
                "mapping_id": one(d, LOCATION_MAPPING_ID), "address": one(d, LOCATION_ADDRESS), "lines": lines}
        elif f == PROFILE_FUNCTION:
            d = msg(v)
            doc["functions"][one(d, FUNCTION_ID)] = {
                "name": strings[one(d, FUNCTION_NAME)], "system_name": strings[one(d, FUNCTION_SYSTEM_NAME)],
                "filename": strings[one(d, FUNCTION_FILENAME)]}
        elif f == PROFILE_MAPPING:
            d = msg(v)
            doc["mappings"][one(d, MAPPING_ID)] = {
                "start": one(d, MAPPING_START), "limit": one(d, MAPPING_LIMIT),
                "filename": strings[one(d, MAPPING_FILENAME)], "build_id": strings[one(d, MAPPING_BUILD_ID)],
                "has_functions": bool(one(d, MAPPING_HAS_FUNCTIONS))}
    return doc
