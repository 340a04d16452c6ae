// errno value -> symbolic name ("EEXIST"), without glibc's strerrorname_np (2.32+).
#pragma once

namespace macvtap {

// The name of a positive errno value, or nullptr for a value Linux does not define.
const char* ErrnoName(int err);

}  // namespace macvtap
