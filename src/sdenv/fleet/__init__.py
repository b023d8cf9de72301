"""``sdenv fleet``: verify (and sync) every node of a GPU fleet, on Ray or on Kubernetes.

- ``rows``: the row model and verdict (pure);
- ``node``: what one task does on its node (probe, env choice, ``sdenv sync``, ``sdenv verify``);
- ``job``: the host turns ENV / --lock / --no-lock into the job sent to every node;
- ``ray_fanout``: one task pinned to each alive Ray node, failures as rows (needs ``sdenv[fleet]``);
- ``k8s``: DaemonSets per env, placed by GPU Feature Discovery labels, plus least-privilege RBAC;
- ``labeler``: the standard-library script those pods run to publish the verdict as node labels.
"""
