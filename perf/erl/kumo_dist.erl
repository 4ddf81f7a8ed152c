%% kumo_dist: Erlang distribution over loopback TCP, the baseline for Kumo's
%% tcp transport (issue 3): the workloads of perf/transport_tcp.c between two
%% Erlang nodes, each its own OS process.
%%
%% Output as kumo_bench's: `name value unit` lines, the value being the
%% median of 5 timed repetitions run after one untimed warm-up repetition,
%% with `# name spread min..max unit` and `# name took S s` comments. Every
%% repetition runs in a fresh local process with fresh processes on the peer.
%%
%% Usage (perf/run does this, with its own epmd; see perf/run):
%%   erlc -o DIR perf/erl/kumo_dist.erl
%%   erl -noshell -pa DIR -run kumo_dist main list
%%   ERL_EPMD_PORT=P erl -noshell -pa DIR FLAGS -name b@127.0.0.1 -setcookie C
%%       -kernel inet_dist_use_interface '{127,0,0,1}' -run kumo_dist peer
%%   ERL_EPMD_PORT=P erl -noshell -pa DIR FLAGS -name a@127.0.0.1 -setcookie C
%%       -kernel inet_dist_use_interface '{127,0,0,1}'
%%       -run kumo_dist main b@127.0.0.1 [metric ...]
%% `list` prints `flags FLAGS...` (the VM flags of both nodes) and `workload
%% METRIC UNIT` for each metric. `peer` waits for a node to connect and
%% halts when it disconnects (or after 60 s without one, or 10 minutes in
%% all). `main PEER` connects to PEER (retrying for 30 s while it boots),
%% runs the workloads that print the metrics named (all when none is),
%% halts the peer, and exits with status 0 when every one produced its
%% figures, 1 otherwise.
%%
%% Definitions (the same as perf/transport_tcp.c):
%%  erl_dist_rtt_64B            us     a process on this node sends a 64-byte
%%                                     binary to an echo process on the peer,
%%                                     which sends it back; time per round
%%                                     trip (5000 trips).
%%  erl_dist_oneway_<size>      Mmsg/s a process on this node sends N
%%  erl_dist_oneway_<size>_MBps MB/s   binaries of <size> bytes (64B, 1KiB,
%%                                     64KiB, 1MiB) to a process on the peer.
%%                                     Credit flow control as the stream
%%                                     workload of kumo_bench, so that the
%%                                     receiver's mailbox stays bounded: at
%%                                     most Window in flight (32 MiB of
%%                                     messages, at most 8192: 8192 of 64 B
%%                                     or 1 KiB, 512 of 64 KiB, 32 of 1 MiB),
%%                                     the receiver acks every Window/8 and
%%                                     each ack returns Window/8 credits.
%%                                     Timed from the first send until the
%%                                     sender learns that the last message
%%                                     arrived. MB is 10^6 bytes.
%%  erl_dist_spawn              k/s    spawn(Peer, M, F, A) of a process that
%%                                     answers its spawner and ends, 64 in
%%                                     flight (20000 spawns), as Kumo's
%%                                     remote spawn answered by DidSpawn.
%%  erl_dist_all_to_all_250     Mmsg/s 250 processes on each node; each sends
%%                                     a small message to every process on
%%                                     the other node, 4 rounds (500,000
%%                                     messages in all); timed from the go
%%                                     until every process got all of its.
%%
%% VM flags, the same on both nodes: +S 1:1 +zdbbl 32768.
%%  - One scheduler per node, as a Kumo node with one shard per core on this
%%    2-core machine: two nodes, two cores. Not bound (+sbt): each VM binds
%%    its first scheduler to the first CPU, so two bound nodes would share
%%    CPU 0. Measured on the 2-core Debian 12 / OTP 25 JIT VM while other
%%    benchmarks ran (load 2-3, so only large differences count): +S 2:2 on
%%    both nodes was no better (rtt 27 vs 25 us, 1 KiB 157-162 vs 170-173
%%    MB/s, 64 KiB and 1 MiB 1.5-1.9 GB/s with either).
%%  - +zdbbl 32768: a distribution buffer busy limit of 32 MiB (Kumo's
%%    per-stream window) instead of 1 MiB, so that a sender of 1 MiB
%%    messages is not suspended after each one. No measurable difference
%%    here, but it can only help Erlang.
%%  - Socket buffers left to the kernel: 8 MiB sndbuf/recbuf on the
%%    distribution sockets (inet_dist_listen_options/connect_options) made
%%    1 MiB slower (1.15 vs 1.9 GB/s).
%%  - Scheduler busy-wait left at the default, as in kumo_bench.
-module(kumo_dist).
-export([main/1, peer/0, spawned/1, a2a_proc/2]).

-define(WARMUP, 1).
-define(REPS, 5).

flags() ->
    "+S 1:1 +zdbbl 32768".

%% {Metrics, Fun}: Metrics are {Name, Unit}; Fun(Peer) runs one repetition
%% and returns one value per metric, in order.
workloads() ->
    [{[{erl_dist_rtt_64B, "us"}], fun(P) -> [rtt(P, 64, 5000)] end}]
        ++ [{[{oneway_name(L, ""), "Mmsg/s"}, {oneway_name(L, "_MBps"), "MB/s"}],
             fun(P) -> oneway(P, Size, N) end}
            || {L, Size, N} <- [{"64B", 64, 200000},
                                {"1KiB", 1024, 100000},
                                {"64KiB", 64 bsl 10, 20000},
                                {"1MiB", 1 bsl 20, 1500}]]
        ++ [{[{erl_dist_spawn, "k/s"}], fun(P) -> [spawns(P, 20000, 64)] end},
            {[{erl_dist_all_to_all_250, "Mmsg/s"}], fun(P) -> [a2a(P, 250, 4)] end}].

oneway_name(Label, Suffix) ->
    list_to_atom("erl_dist_oneway_" ++ Label ++ Suffix).

main(["list"]) ->
    io:format("flags ~s~n", [flags()]),
    [io:format("workload ~s ~s~n", [M, U]) || {Ms, _} <- workloads(), {M, U} <- Ms],
    halt(0);
main([PeerS | Only]) ->
    Peer = list_to_atom(PeerS),
    Selected = [W || {Ms, _} = W <- workloads(),
                     Only =:= [] orelse
                         lists:any(fun({M, _}) -> lists:member(atom_to_list(M), Only) end,
                                   Ms)],
    ok = connect(Peer, 600),
    header(Peer),
    Results = [run_workload(Peer, W) || W <- Selected],
    %% Stop the peer now rather than leave it to notice our nodedown: the
    %% call ends with noconnection when the peer halts.
    catch erpc:call(Peer, erlang, halt, [0], 5000),
    halt(case lists:all(fun(R) -> R =:= ok end, Results) of
             true -> 0;
             false -> 1
         end);
main(_) ->
    io:format(standard_error, "usage: kumo_dist main list | PEERNODE [metric ...]~n", []),
    halt(2).

%% The peer node: alive until the measuring node has come and gone.
peer() ->
    ok = net_kernel:monitor_nodes(true),
    erlang:send_after(600000, self(), time_limit),
    receive
        {nodeup, Node} ->
            receive
                {nodedown, Node} -> halt(0);
                time_limit -> halt(1)
            end
    after 60000 -> halt(1)
    end.

%% The peer registers with epmd only once its VM has booted.
connect(Peer, 0) ->
    io:format("# could not connect to ~s~n", [Peer]),
    halt(1);
connect(Peer, Tries) ->
    case net_kernel:connect_node(Peer) of
        true -> ok;
        _ -> receive after 50 -> connect(Peer, Tries - 1) end
    end.

header(Peer) ->
    io:format("# erlang otp=~s erts=~s emu=~p dist node=~s peer=~s schedulers=~p "
              "bindings=~w dist_buf_busy_limit=~b~n",
              [erlang:system_info(otp_release), erlang:system_info(version),
               erlang:system_info(emu_flavor), node(), Peer,
               erlang:system_info(schedulers_online),
               erlang:system_info(scheduler_bindings),
               erlang:system_info(dist_buf_busy_limit)]).

run_workload(Peer, {Metrics, Fun}) ->
    Start = now_ns(),
    try
        All = [one_rep(fun() -> Fun(Peer) end) || _ <- lists:seq(1, ?WARMUP + ?REPS)],
        Timed = lists:nthtail(?WARMUP, All),
        lists:foldl(
          fun({Metric, Unit}, I) ->
                  Vs = lists:sort([float(lists:nth(I, R)) || R <- Timed]),
                  Median = lists:nth((length(Vs) + 1) div 2, Vs),
                  io:format("# ~s spread ~s..~s ~s~n",
                            [Metric, fmt(hd(Vs)), fmt(lists:last(Vs)), Unit]),
                  io:format("~s ~s ~s~n", [Metric, fmt(Median), Unit]),
                  I + 1
          end, 1, Metrics),
        io:format("# ~s took ~.1f s for ~b runs~n",
                  [element(1, hd(Metrics)), (now_ns() - Start) / 1.0e9,
                   ?WARMUP + ?REPS]),
        ok
    catch
        Class:Reason ->
            io:format("# ~s FAILED ~p:~0p~n", [element(1, hd(Metrics)), Class, Reason]),
            failed
    end.

fmt(V) when V >= 100.0 -> float_to_list(V, [{decimals, 1}]);
fmt(V) -> float_to_list(V, [{decimals, 4}]).

%% One repetition in a fresh local process; the processes it spawns on the
%% peer are linked to it and so end with it.
one_rep(Fun) ->
    {Pid, Ref} = erlang:spawn_monitor(fun() -> exit({result, Fun()}) end),
    receive
        {'DOWN', Ref, process, Pid, {result, V}} ->
            erlang:garbage_collect(),
            V;
        {'DOWN', Ref, process, Pid, Reason} ->
            error({repetition_failed, Reason})
    end.

now_ns() -> erlang:monotonic_time(nanosecond).

%% ---- round trip -----------------------------------------------------------

%% The echo process learns the pinger's pid once, so each hop carries the
%% 64-byte binary alone, as Kumo's 64-byte message.
rtt(Peer, Size, N) ->
    Bin = binary:copy(<<0>>, Size),
    Size = byte_size(Bin),
    Echo = spawn_link(Peer, fun() -> receive {pinger, A} -> echo(A) end end),
    Echo ! {pinger, self()},
    ping(Echo, Bin, 100),                   % both sides running, untimed
    T0 = now_ns(),
    ping(Echo, Bin, N),
    T1 = now_ns(),
    Echo ! stop,
    (T1 - T0) / N / 1.0e3.

ping(_Echo, _Bin, 0) -> ok;
ping(Echo, Bin, K) ->
    Echo ! Bin,
    receive B when is_binary(B) -> ping(Echo, Bin, K - 1) end.

echo(A) ->
    receive
        B when is_binary(B) -> A ! B, echo(A);
        stop -> ok
    end.

%% ---- one-way --------------------------------------------------------------

oneway(Peer, Size, N) ->
    Window = max(1, min(8192, (32 bsl 20) div Size)),
    AckEvery = max(1, Window div 8),
    Bin = binary:copy(<<0>>, Size),
    Size = byte_size(Bin),
    Self = self(),
    R = spawn_link(Peer, kumo_bench, stream_recv, [Self, N, AckEvery, AckEvery]),
    T0 = now_ns(),
    kumo_bench:pump(R, Bin, N, Window, AckEvery),
    receive done -> ok end,
    T1 = now_ns(),
    Dt = T1 - T0,
    [N / Dt * 1.0e3, N * Size / Dt * 1.0e3].  % per ns * 1e9 / 1e6

%% ---- remote spawn ---------------------------------------------------------

spawns(Peer, N, InFlight) ->
    Self = self(),
    T0 = now_ns(),
    [spawn(Peer, kumo_dist, spawned, [Self]) || _ <- lists:seq(1, min(N, InFlight))],
    spawn_more(Peer, Self, N - min(N, InFlight), min(N, InFlight)),
    T1 = now_ns(),
    N / ((T1 - T0) / 1.0e9) / 1.0e3.

spawn_more(_Peer, _Self, 0, 0) -> ok;
spawn_more(Peer, Self, Left, Out) ->
    receive
        {spawned, _} when Left > 0 ->
            spawn(Peer, kumo_dist, spawned, [Self]),
            spawn_more(Peer, Self, Left - 1, Out);
        {spawned, _} ->
            spawn_more(Peer, Self, 0, Out - 1)
    end.

spawned(Parent) ->
    Parent ! {spawned, self()}.

%% ---- all to all across the two nodes --------------------------------------

a2a(Peer, N, Rounds) ->
    Self = self(),
    Expect = N * Rounds,
    Locals = [spawn_link(kumo_dist, a2a_proc, [Self, Expect]) || _ <- lists:seq(1, N)],
    Remotes = [spawn_link(Peer, kumo_dist, a2a_proc, [Self, Expect]) || _ <- lists:seq(1, N)],
    T0 = now_ns(),
    [P ! {go, Remotes, Rounds} || P <- Locals],
    [P ! {go, Locals, Rounds} || P <- Remotes],
    [receive a2a_done -> ok end || _ <- lists:seq(1, 2 * N)],
    T1 = now_ns(),
    2 * N * Expect / ((T1 - T0) / 1.0e9) / 1.0e6.

a2a_proc(Report, Expect) ->
    receive
        {go, Targets, Rounds} ->
            [T ! m || _ <- lists:seq(1, Rounds), T <- Targets],
            a2a_count(Expect),
            Report ! a2a_done
    end.

a2a_count(0) -> ok;
a2a_count(K) -> receive m -> a2a_count(K - 1) end.
