# frozen_string_literal: true

require_relative "lib/ciq/version"

Gem::Specification.new do |spec|
  spec.name = "ciq-ruby"
  spec.version = Ciq::VERSION
  spec.summary = "minitest and RSpec over ciq's persistent worker protocol"
  spec.description = "Lets each ciq worker load a minitest or RSpec suite once and run the tests " \
                     "ciq sends it, one at a time, over ciq's persistent worker protocol (version 1)."
  spec.authors = ["ciq contributors"]
  spec.license = "MIT"
  spec.files = Dir.glob("lib/**/*.rb", base: __dir__) + ["README.md"]
  spec.require_paths = ["lib"]
  spec.required_ruby_version = ">= 2.7"
  # No runtime dependency: minitest or rspec-core is the suite's own, and nothing else is
  # needed beyond Ruby's standard library (json), so installing needs no network.
end
