"""`inv check-arm`: is an image, or a whole workload, ready for Arm?

    image | --manifests PATH|- | --compose FILE
      ──► workload.py  the images and where each is used (kind/name/container, file:line),
                       and each Pod template's scheduling (nodeSelector, affinity, tolerations)
      ──► registry.py  registry v2 API: index or manifest, image config, layer blobs; the
                       user's docker config and credential helpers, bearer-token challenges
      ──► layers.py    the arm64 variant's entrypoint, found through its layers (top first,
                       each read once, streamed, never unpacked to disk), and its ELF machine
      ──► verdict.py   per image (in parallel): READY / NOT READY / UNKNOWN, why, the fix
      ──► report.py    the table, the fixes and the GKE scheduling hints; --json; --sarif
    run.py             --run (and the single-image form): the arm64 variant started on an
                       arm64 node of the farm through its docker context
    tasks.py           the task bodies
"""
