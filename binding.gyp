{
  "targets": [
    {
      "target_name": "macvtap_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/netlink_socket.cc",
        "native/netns.cc",
        "native/devnode.cc",
        "native/statefs.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags": ["-Wall", "-Wextra", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-fvisibility=hidden", "-fno-exceptions"]
    }
  ]
}
