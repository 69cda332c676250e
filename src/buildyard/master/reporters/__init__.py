"""Reporters and the other services of ``c['services']``: read-only consumers of build,
buildset, build request and worker events that tell the outside world (HTTP endpoints, commit
statuses on GitHub, GitLab and Bitbucket, Gerrit reviews, chat and push notifications, mail).

- :mod:`.service`: ``BuildbotService``, the base master.cfg subclasses, and the manager that
  starts, reconfigures (only when a service's arguments changed) and stops them.
- :mod:`.base`: ``ReporterBase``: follows the mq events its generators want, each event handled
  in a task of its own, so a slow or failing reporter never holds a build up.
- :mod:`.generators`: turn one event into a report (``BuildStatusGenerator``, ...).
- :mod:`.message`: the message formatters (Jinja2 templates, renderables, functions).
- :mod:`.details`: a build's or buildset's details, read through the data API.
- :mod:`.http`, :mod:`.github`, :mod:`.gitlab`, :mod:`.bitbucket`, :mod:`.bitbucketserver`,
  :mod:`.gerrit` (over ssh), :mod:`.zulip`, :mod:`.notifiers` (Pushover, Pushjet),
  :mod:`.mail`: the reporters themselves, the HTTP ones through :mod:`.httpclient`.
- :mod:`.chat`: the chat bots' commands and notices; :mod:`.irc` and :mod:`.telegram`, the
  bots (services, not ``ReporterBase``s: they follow events and answer users themselves).

May import ``data``, ``mq``, ``secrets``, ``model`` and ``common``; sees the rest of the system
only through the data API and the message queue.
"""
