#!/usr/bin/env python3
"""Keeps the HTML report template's Content-Security-Policy in step with its script.

The template (src/report/html/template.html) allows exactly one script to run: its own, named by
its SHA-256 in the page's Content-Security-Policy. Even if markup from the data ever reached the
page as HTML, a browser would run none of it. Edit the script, then run this to write the new
hash into the policy; `--check` only says whether it is current (the integration tests check it
too).

    python3 scripts/html_csp.py [--check] [--template src/report/html/template.html]
"""
import argparse
import base64
import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
POLICY = re.compile(r"script-src 'sha256-[^']*'")


def script_hash(template):
    scripts = SCRIPT.findall(template)
    if len(scripts) != 1:
        sys.exit(f"the template must hold exactly one plain <script> element, it holds {len(scripts)}")
    return base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--template", default=os.path.join(ROOT, "src", "report", "html", "template.html"))
    args = parser.parse_args()
    with open(args.template, encoding="utf-8") as f:
        template = f.read()
    want = f"script-src 'sha256-{script_hash(template)}'"
    found = POLICY.findall(template)
    if len(found) != 1:
        sys.exit("the template's Content-Security-Policy has no single script-src 'sha256-...' source")
    if found[0] == want:
        print("html_csp: the template's policy names its script")
        return
    if args.check:
        sys.exit(f"html_csp: the template's policy does not name its script: run scripts/html_csp.py (want {want})")
    with open(args.template, "w", encoding="utf-8") as f:
        f.write(template.replace(found[0], want))
    print(f"html_csp: wrote {want}")


if __name__ == "__main__":
    main()
