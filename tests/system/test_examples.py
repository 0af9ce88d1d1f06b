"""The bundled examples (scenarios/examples/) run against a server of the
tests' own, and what the server did matches tide's figures."""

from pathlib import Path

import pytest

from crud_server import FIRST_ID, CrudServer

EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios" / "examples"


@pytest.fixture
def crud(request):
    server = CrudServer().start()
    request.addfinalizer(server.stop)
    return server


def test_api_crud_example(tide, crud):
    res = tide.run(EXAMPLES / "api-crud.lua", "--target", crud.url, "--vus", "4", "--iterations", "6")
    assert res.rc == 0, str(res)
    iterations = 4 * 6
    assert res.count("iterations") == iterations, str(res)
    # every step happened on the server, once per iteration, and nothing is left
    assert crud.ops["create"] == crud.ops["read"] == crud.ops["update"] == crud.ops["delete"] == iterations
    assert crud.ops["register"] == crud.ops["login"] == crud.ops["unregister"] == 1
    assert crud.items == {} and crud.users == {}
    assert crud.next_id == FIRST_ID + iterations
    # tide's request counts per name equal the server's
    for name, op in (("POST /items", "create"), ("GET /items/:id", "read"),
                     ("PUT /items/:id", "update"), ("DELETE /items/:id", "delete")):
        assert res.count(f"http_reqs{{name:{name}}}") == crud.ops[op], name
    checks = res.metric("checks")
    assert checks["values"]["rate"] == 1, checks
    for group in ("::create", "::read", "::update", "::delete"):
        assert res.count(f"group_duration{{group:{group}}}") == iterations, group


def read_users():
    import csv
    with open(EXAMPLES / "users.csv", newline="") as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f)}


def test_csv_login_example_uses_each_row_once(tide):
    users = read_users()
    server = CrudServer(users=users).start()
    try:
        res = tide.run(EXAMPLES / "csv-login.lua", "--target", server.url, "--threads", "2")
    finally:
        server.stop()
    assert res.rc == 0, str(res)
    # every user logged in exactly once, with the password as the CSV has it
    assert dict(server.logins) == {name: 1 for name in users}
    assert server.ops["login failed"] == 0
    assert server.ops["create"] == len(users) == res.count("iterations")
    assert res.count("http_reqs{name:POST /auth/login}") == len(users)
