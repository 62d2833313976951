# frozen_string_literal: true

module Ciq
  # What a test prints through $stdout and $stderr: copied to stderr as it is written (ciq
  # reads it live, and keeps it as the crash output if the process dies) and kept for the
  # test's result, as pytest's capture keeps it for a failure's report.
  #
  # Output that bypasses Ruby's $stdout/$stderr (STDOUT.write, subprocesses, C extensions)
  # still reaches stderr, uncaptured.
  class Output
    # At most this much of a test's output is kept for its result; the rest still goes to
    # stderr.
    LIMIT = 1 << 20

    # An IO on fd 1 or 2 that also hands what is written to the capture. A real IO (not a
    # delegator), so `system(..., out: $stdout)`, `$stdout.fileno` and `IO === $stdout` work.
    class Tee < IO
      attr_accessor :sink

      def write(*parts)
        sink&.append(parts)
        super
      end
    end

    def initialize
      # Buffered writes to fd 1 would be lost if the process dies (exit!, a crash).
      STDOUT.sync = true
      @buffer = nil
      @streams = {}
      reset_streams
    end

    # Sets $stdout, $stderr and $stdin back to the gem's own before each test: one test that
    # closed or replaced them must not blind the capture of the next ones.
    def reset_streams
      $stdout = stream(1)
      $stderr = stream(2)
      $stdin = STDIN
    end

    # Starts keeping what is written through the tees.
    def start
      @buffer = +"".b
      @dropped = 0
    end

    # Stops keeping, and returns what was written since #start ("" if nothing).
    def stop
      text = @buffer || +""
      @buffer = nil
      text << "\n[ciq: #{@dropped} more bytes of output not kept]\n" if @dropped.positive?
      text
    end

    # Called by the tees.
    def append(parts)
      return if @buffer.nil?

      parts.each do |part|
        text = part.to_s
        room = LIMIT - @buffer.bytesize
        @buffer << text.byteslice(0, [room, 0].max).b
        @dropped += [text.bytesize - room, 0].max if room < text.bytesize
      end
    end

    private

    def stream(fd)
      existing = @streams[fd]
      return existing if existing && !existing.closed?

      tee = Tee.new(fd, "w", autoclose: false)
      tee.sync = true
      tee.sink = self
      @streams[fd] = tee
    end
  end
end
