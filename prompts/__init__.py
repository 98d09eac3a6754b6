"""The versioned prompt templates (`classify/vN.jinja` + `.yaml`, `review/vN`), shipped as package data
and found with `server.resources.builtin_prompts_dir()`; `CHANGELOG.md` says what each version changed."""
