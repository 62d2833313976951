# frozen_string_literal: true

require "minitest"
require_relative "server"
require_relative "ids"

module Ciq
  # minitest over ciq's persistent protocol. ciq starts
  #
  #   ruby -rciq/minitest -e Ciq::Minitest.serve -- [-I DIR] [-r LIB] [minitest options] [FILE|DIR|GLOB ...]
  #
  # Ids are ci-queue's: `ClassName#test_name`. Each test runs through Minitest.run_one_method,
  # as minitest-queue runs it; minitest has no state shared by a class's tests to keep up, so
  # `next`/`keep` change nothing and no result is ever `kept`.
  module Minitest
    def self.serve(argv = ARGV)
      Server.serve(Adapter, argv)
    end

    # A test's id before repeats are numbered: ci-queue's `ClassName#test_name`.
    def self.id(klass, method)
      Ids.escape("#{klass.name}##{method}")
    end

    # The user's arguments, as `ruby -I... -r...` and `rails test`/`rake test` take them.
    module Arguments
      # minitest's own options that take their value as the next argument.
      VALUE_OPTIONS = %w[-s --seed -n --name -e --exclude -S --skip].freeze

      # [load path dirs, libraries to require, test paths, minitest options]
      def self.parse(argv)
        dirs = []
        requires = []
        paths = []
        options = []
        args = argv.dup
        until args.empty?
          arg = args.shift
          case arg
          when "-I" then dirs.concat(value(args, arg).split(File::PATH_SEPARATOR))
          when /\A-I(.+)/ then dirs.concat(Regexp.last_match(1).split(File::PATH_SEPARATOR))
          when "-r", "--require" then requires << value(args, arg)
          when /\A-r(.+)/, /\A--require=(.+)/ then requires << Regexp.last_match(1)
          when *VALUE_OPTIONS then options << arg << value(args, arg)
          when /\A-./ then options << arg
          else paths << arg
          end
        end
        [dirs, requires, paths, options]
      end

      def self.value(args, option)
        raise Fatal, "minitest usage error: #{option} needs a value" if args.empty?

        args.shift
      end
    end

    # Notes where the running test's phases begin among its failures, so an error in setup or
    # teardown is told from the test's own failure. Prepended to Minitest::Test, whose #run
    # calls capture_exceptions once around setup and the test, then once per teardown hook.
    module Phases
      class << self
        attr_accessor :body_from, :teardown_from, :captures

        def reset
          self.body_from = nil
          self.teardown_from = nil
          self.captures = 0
        end

        # :setup, :test or :teardown, for the failure at `index`.
        def of(index)
          return :test if teardown_from.nil? # not a Minitest::Test: no phases known
          return :teardown if index >= teardown_from
          return :setup if body_from.nil? || index < body_from

          :test
        end
      end

      def after_setup
        super
        Phases.body_from = failures.size
      end

      def capture_exceptions
        Phases.captures += 1
        Phases.teardown_from = failures.size if Phases.captures == 2
        super
      end
    end

    # Cuts backtraces at the gem's first frame (what is below it is the gem's loop and the
    # launcher), then filters as minitest does.
    class BacktraceFilter
      GEM_LIB = File.expand_path("..", __dir__)

      def initialize(inner)
        @inner = inner
      end

      def filter(backtrace)
        @inner.filter(backtrace&.take_while { |line| !line.start_with?(GEM_LIB) })
      end
    end

    # Where a directory's test files are found, as minitest's own rake task finds them.
    TEST_FILES = "**/{test_*,*_test}.rb"

    # The files to load for the paths given (files, directories, globs), each once, as
    # absolute paths.
    def self.test_files(paths)
      files = paths.flat_map do |path|
        found =
          if File.file?(path) then [path]
          elsif File.directory?(path) then Dir.glob(File.join(path, TEST_FILES))
          elsif path.match?(/[*?\[{]/) then Dir.glob(path).flat_map { |p| File.directory?(p) ? Dir.glob(File.join(p, TEST_FILES)) : [p] }
          else raise Fatal, "minitest: no such test file or directory: #{path}"
          end
        raise Fatal, "minitest: no test files in #{path} (looked for #{TEST_FILES})" if found.empty?

        found.sort
      end
      files.map { |file| File.expand_path(file) }.uniq
    end

    # Loads the suite and runs its tests for Ciq::Server.
    class Adapter
      def self.framework
        "minitest"
      end

      def framework
        self.class.framework
      end

      def framework_version
        ::Minitest::VERSION
      end

      attr_reader :ids

      def initialize(argv)
        dirs, requires, paths, options = Arguments.parse(argv)
        # Test files require minitest/autorun, whose at_exit hook would run the whole suite
        # again when this process exits.
        ::Minitest.class_variable_set(:@@installed_at_exit, true)
        # The load path of `ruby -I`, then test/ and lib/ as `rails test` and `rake test` add.
        load_path = dirs + %w[test lib].select { |dir| File.directory?(dir) }
        $LOAD_PATH.unshift(*load_path.map { |dir| File.expand_path(dir) }.uniq)
        requires.each { |lib| require lib }
        load_files(Minitest.test_files(paths.empty? ? ["test"] : paths))
        # After loading, as Minitest.run does: plugins and options a helper defines apply.
        @options = minitest_options(options)
        @tests = list
        @ids = @tests.keys
        ::Minitest::Test.prepend(Phases)
        @reporter = reporter
        # After the plugins' init, which may set a filter of their own (Rails' does).
        ::Minitest.backtrace_filter = BacktraceFilter.new(::Minitest.backtrace_filter)
      end

      def prepare(_id)
        nil
      end

      def execute(id, _next_id, _keep)
        klass, method = @tests.fetch(id)
        Phases.reset
        @reporter.prerecord(klass, method)
        result = ::Minitest.run_one_method(klass, method)
        @reporter.record(result)
        verdict(id, result)
      end

      def settle
        nil
      end

      # The summary, then the Minitest.after_run hooks, latest first, as at the end of a
      # plain run. A hook that fails does not stop the others; the exit status says so.
      def finish
        @reporter.report
        status = Server::EXIT_OK
        ::Minitest.class_variable_get(:@@after_run).reverse_each do |hook|
          hook.call
        rescue ScriptError, StandardError => e
          Ciq.stderr.puts "ciq: a Minitest.after_run hook failed: #{Ciq.describe(e)}"
          status = Server::EXIT_TEARDOWN_FAILED
        end
        status
      end

      private

      # minitest's own option parsing (seed, -n/-e filters, -v, plugins' options), as
      # Minitest.run does it.
      def minitest_options(options)
        ::Minitest.load_plugins unless options.delete("--no-plugins") || ENV["MT_NO_PLUGINS"]
        given = options.join(" ")
        parsed = begin
          ::Minitest.process_args(options)
        rescue OptionParser::ParseError => e
          raise Fatal, "minitest usage error: #{e.message}"
        rescue SystemExit
          raise Fatal, "minitest usage error: minitest refused the options #{given} (its stderr says why)"
        end
        ::Minitest.seed = parsed[:seed] if ::Minitest.respond_to?(:seed=)
        srand(parsed[:seed])
        parsed
      end

      # Every file, even after one fails to load, so the fatal message names them all.
      def load_files(files)
        errors = []
        files.each do |file|
          require file
        rescue ScriptError, StandardError => e
          errors << "error loading #{relative(file)}:\n#{Ciq.describe(e)}"
        rescue SystemExit => e
          raise Fatal, "#{relative(file)} called exit (status #{e.status}) while loading"
        end
        return if errors.empty?

        count = errors.size == 1 ? "1 error" : "#{errors.size} errors"
        raise Fatal, "minitest could not load the tests (#{count}):\n\n#{errors.join("\n")}"
      end

      def relative(file)
        file.delete_prefix("#{Dir.pwd}/")
      end

      # { id => [class, method] }: classes in the order they were defined, each one's tests
      # sorted by name (minitest shuffles them at run time; ciq orders them itself), with
      # minitest's -n/--name and -e/--exclude filters applied as Minitest::Runnable.run does.
      def list
        entries = ::Minitest::Runnable.runnables.flat_map do |klass|
          methods = klass.runnable_methods.sort.select { |method| selected?(klass, method) }
          next [] if methods.empty?
          raise Fatal, "minitest: an anonymous class (#{klass.inspect}) has tests (#{methods.first}, ...): give it a name, a test id needs one" if klass.name.nil?

          methods.map { |method| [Minitest.id(klass, method), klass, method] }
        end
        Ids.unique(entries.map(&:first)).zip(entries).to_h { |id, (_, klass, method)| [id, [klass, method]] }
      end

      def selected?(klass, method)
        filter = pattern(@options[:filter] || "/./")
        exclude = pattern(@options[:exclude])
        (filter === method || filter === "#{klass}##{method}") && !(exclude === method || exclude === "#{klass}##{method}")
      end

      def pattern(text)
        text.is_a?(String) && text =~ %r{/(.*)/} ? Regexp.new(Regexp.last_match(1)) : text
      end

      # minitest's reporters (progress, summary, and any a plugin adds), writing to the gem's
      # copy of stderr.
      def reporter
        @options[:io] = Ciq.stderr
        reporter = ::Minitest::CompositeReporter.new
        reporter << ::Minitest::SummaryReporter.new(@options[:io], @options)
        reporter << ::Minitest::ProgressReporter.new(@options[:io], @options)
        ::Minitest.reporter = reporter if ::Minitest.respond_to?(:reporter=)
        ::Minitest.init_plugins(@options)
        ::Minitest.reporter = nil if ::Minitest.respond_to?(:reporter=)
        reporter.start
        reporter
      end

      # [outcome, output, kept] from minitest's result: the test's own failure (an assertion
      # or an exception in the test method) is `failed`; one in setup or teardown only,
      # `errored`; a skip, `skipped`.
      def verdict(id, result)
        failures = result.failures.each_with_index.reject { |failure, _| failure.is_a?(::Minitest::Skip) }
        if failures.empty?
          skip = result.failures.first
          return ["skipped", "skipped: #{skip.message}", false] if skip

          return ["passed", "", false]
        end
        outcome = failures.any? { |_, index| Phases.of(index) == :test } ? "failed" : "errored"
        [outcome, failures.map { |failure, index| describe(id, failure, Phases.of(index)) }.join("\n"), false]
      end

      # As minitest's summary prints a failure, with its phase and the backtrace.
      def describe(id, failure, phase)
        label = phase == :test ? failure.result_label : "#{failure.result_label} in #{phase}"
        text = +"#{label}:\n#{id} [#{failure.location}]:\n#{failure.message}\n"
        # An UnexpectedError's message already holds its backtrace.
        unless failure.is_a?(::Minitest::UnexpectedError)
          text << ::Minitest.filter_backtrace(failure.backtrace || []).map { |line| "    #{line}\n" }.join
        end
        text
      end
    end
  end
end
