{
  "targets": [
    {
      "target_name": "macvtap_native",
      "sources": [
        "native/addon.cc",
        "native/addon_data.cc",
        "native/args.cc",
        "native/child.cc",
        "native/devnode.cc",
        "native/errno_names.cc",
        "native/errors.cc",
        "native/netlink_socket.cc",
        "native/netlink_socket_loop.cc",
        "native/netns.cc",
        "native/statefs.cc",
        "native/xxhash64.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"
      ],
      "cflags!": [
        "-fno-exceptions"
      ],
      "cflags_cc!": [
        "-fno-exceptions",
        "-std=gnu++17"
      ],
      "cflags": [
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fvisibility=hidden"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fvisibility=hidden",
        "-fno-exceptions"
      ]
    }
  ]
}
