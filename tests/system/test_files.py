"""files = { field = { path = ... } | { data = ..., filename = ..., content_type = ... } }
with form: a multipart/form-data body (libcurl's mime API), checked on the
parts httpbin and a recording server read. Paths are relative to the
scenario file's directory; a file that cannot be read is an error naming
it and the request function, raised before anything is sent."""

import email.parser
import email.policy

import pytest

from httpserver import RecordingServer
from test_compression import one_iteration

BINARY = bytes(range(256)) * 3


@pytest.fixture
def recorder(request):
    server = RecordingServer().start()
    request.addfinalizer(server.stop)
    return server


def parts_of(headers, body):
    ctype = {k.lower(): v for k, v in headers.items()}["content-type"]
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    assert msg.is_multipart(), ctype
    return [(p.get_param("name", header="content-disposition"), p.get_filename(), p.get_content_type()
             if p.get("content-type") else None, p.get_payload(decode=True)) for p in msg.iter_parts()]


def scenario_beside(tmp_path, text):
    """The scenario in tmp/sub/ with its data file; tide runs from tmp/."""
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "blob.bin").write_bytes(BINARY)
    path = sub / "files.lua"
    path.write_text(text)
    return path


def test_multipart_parts_as_the_server_reads_them(run_tide, recorder, tmp_path):
    path = scenario_beside(tmp_path, one_iteration("""
    local r = http.post(vu.target .. "/upload", {
      form = { title = "hello world", n = 3 },
      files = {
        doc = { data = "a,b\\n1,2\\n", filename = "x.csv", content_type = "text/csv" },
        blob = { path = "blob.bin" },
      },
    })
    assert(r.status == 200, tostring(r.status))
    -- the same user's next requests carry nothing of the multipart body
    assert(http.post(vu.target .. "/plain", { body = "raw" }).status == 200)
    assert(http.get(vu.target .. "/get").status == 200)
"""))
    res = run_tide(path, "--target", recorder.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)
    (method, _, headers, body), plain, get = recorder.seen
    assert plain[0] == "POST" and plain[3] == b"raw", plain
    assert "content-type" not in {k.lower() for k in plain[2]}, plain[2]
    assert get[0] == "GET" and get[3] == b"" and "content-type" not in {k.lower() for k in get[2]}, get
    assert method == "POST"
    assert {k.lower(): v for k, v in headers.items()}["content-type"].startswith("multipart/form-data; boundary=")
    parts = {p[0]: p[1:] for p in parts_of(headers, body)}
    assert parts["title"] == (None, None, b"hello world"), parts["title"]
    assert parts["n"] == (None, None, b"3"), parts["n"]
    assert parts["doc"] == ("x.csv", "text/csv", b"a,b\n1,2\n"), parts["doc"]
    assert parts["blob"][0] == "blob.bin" and parts["blob"][2] == BINARY, parts["blob"][:2]
    assert res.count("data_sent") >= len(body), (res.count("data_sent"), len(body))


def test_httpbin_reads_files_and_form(run_tide, httpbin):
    res = run_tide(one_iteration("""
    local r = http.put(vu.target .. "/anything", {
      form = { who = "me" },
      files = { notes = { data = "some notes", filename = "notes.txt", content_type = "text/plain" } },
    })
    local j = r:json()
    assert(j.method == "PUT", j.method)
    assert(j.form.who == "me", r.body)
    assert(j.files.notes == "some notes", r.body)
    assert(j.headers["Content-Type"]:find("^multipart/form%-data; boundary="), j.headers["Content-Type"])
"""), "--target", httpbin.url)
    assert res.rc == 0 and res.count("iteration_errors") == 0, str(res)


def test_missing_file_is_an_error_before_sending(run_tide, recorder, tmp_path):
    path = scenario_beside(tmp_path, one_iteration("""
    http.post(vu.target .. "/upload", { files = { f = { path = "no-such.png" } } })
"""))
    res = run_tide(path, "--target", recorder.url)
    out = res.stdout + res.stderr
    assert res.count("iteration_errors") == 1, str(res)
    assert "http.post: option 'files': cannot read 'no-such.png'" in out, out
    assert "No such file or directory" in out, out
    assert recorder.seen == []


@pytest.mark.parametrize("opts, message", [
    ('{ files = { f = { data = "x" } }, body = "y" }', "options 'files' and 'body' exclude each other"),
    ('{ files = { f = { } } }', "'f' needs a path or data"),
    ('{ files = { f = "a.png" } }', "option 'files': field = { path = ... }"),
    ('{ files = {} }', "option 'files' is empty"),
])
def test_bad_files_option(run_tide, recorder, opts, message):
    res = run_tide(one_iteration(f'http.post(vu.target .. "/x", {opts})'), "--target", recorder.url)
    assert message in res.stdout + res.stderr, str(res)
    assert recorder.seen == []
