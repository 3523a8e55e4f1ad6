pytest_plugins = [
    "raidiam_devenv.fixtures_authserver",
    "raidiam_devenv.fixtures_kube",
    "raidiam_devenv.fixtures_node",
    "raidiam_devenv.fixtures_registration",
]
