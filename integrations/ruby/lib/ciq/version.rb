# frozen_string_literal: true

# ciq's Ruby side: minitest and RSpec served over ciq's persistent worker protocol.
module Ciq
  # The gem's version, which ciq's pre-flight check prints.
  VERSION = "0.1.0"
  # The version of ciq's persistent worker protocol this gem speaks (docs/persistent-protocol.md).
  PROTOCOL_VERSION = 1
end
