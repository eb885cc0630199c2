"""Print a short, readable summary of compiled WorkflowTemplates (used by `make demo`)."""

from __future__ import annotations

import sys

import yaml


def main(path: str) -> None:
    with open(path) as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    for document in documents:
        if document["kind"] != "WorkflowTemplate":
            print(f"{document['kind']}/{document['metadata']['name']}")
            continue
        spec = document["spec"]
        name = document["metadata"]["name"]
        templates = {t["name"]: t for t in spec["templates"]}
        print(f"WorkflowTemplate/{name}  (argo submit --from workflowtemplate/{name})")
        for dag_name in (spec["entrypoint"], spec.get("onExit")):
            if not dag_name:
                continue
            print(f"  {dag_name}:")
            for task in templates[dag_name]["dag"]["tasks"]:
                kind = (
                    "suspend"
                    if "suspend" in templates[task["template"]]
                    else (" ".join(templates[task["template"]]["container"]["command"]))
                )
                extra = f"  when {task['when']}" if "when" in task else ""
                after = f"  after {task['depends']}" if "depends" in task else ""
                print(f"    - {task['name']:<38} {kind}{after}{extra}")
    print(f"\n{len(documents)} objects written to {path}; apply them with kubectl apply -f {path}")


if __name__ == "__main__":
    main(sys.argv[1])
