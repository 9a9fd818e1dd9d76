#!/usr/bin/env bash
# Set up everything fsmc needs on a fresh Debian/Ubuntu machine (idempotent):
#   system packages (Graphviz for diagrams, Chromium for the review-site browser test,
#   PostgreSQL's server binaries for the store tests and RabbitMQ's for the AMQP tests: they
#   start private servers, Neovim for the editor end-to-end test),
#   a virtual environment in .venv with fsmc installed editable, with its test extras.
# Usage: bash scripts/setup.sh        (then: source .venv/bin/activate)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(graphviz chromium fonts-dejavu-core postgresql rabbitmq-server neovim)

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing ${missing[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "setup: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# `editable_mode=strict`: the install is a tree of links to the sources (build/__editable__*),
# named by a .pth file, which type checkers follow; setuptools' default editable mode maps
# fsmc.* to the folders with an import hook that mypy cannot see ("Cannot find implementation
# or library stub for module named fsmc.runtime" in every application). A new source file
# needs this script run again (editing one does not).
.venv/bin/python -m pip install -q -e '.[test,bench]' --config-settings editable_mode=strict
echo "setup: done ($(.venv/bin/fsmc --version))"
