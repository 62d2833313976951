# frozen_string_literal: true

require_relative "version"

module Ciq
  # ciq's pre-flight check, run before starting any worker:
  #
  #   ruby -rciq/preflight -e Ciq.preflight -- minitest|rspec
  #
  # Exit 0 with one line ("ciq-ruby 0.1.0 protocol 1 minitest 5.17.0") when the gem and the
  # framework load; 1 with Ruby's "cannot load such file -- ciq/preflight" when the gem is not
  # installed for this Ruby; 2 with one line naming the missing framework or a bad argument.
  def self.preflight(argv = ARGV)
    framework = argv.first
    library, version = { "minitest" => ["minitest", -> { ::Minitest::VERSION }],
                         "rspec" => ["rspec/core", -> { ::RSpec::Core::Version::STRING }] }[framework]
    unless library
      warn "ciq-ruby: unknown framework #{framework.inspect}: give minitest or rspec"
      exit 2
    end
    begin
      require library
    rescue LoadError => e
      warn "ciq-ruby: #{framework} cannot be loaded (#{e.message}): add it to the suite's Gemfile or install it"
      exit 2
    end
    puts "ciq-ruby #{VERSION} protocol #{PROTOCOL_VERSION} #{framework} #{version.call}"
  end
end
