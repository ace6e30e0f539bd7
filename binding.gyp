{
  "targets": [
    {
      "target_name": "zinflate",
      "sources": ["native/zinflate.c"],
      "cflags": ["-O2", "-Wall"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
