using Akka.Actor;
using Pipeline.Actors.Execution;
using Pipeline.Actors.Faults;
using Pipeline.Actors.Messages;
using Pipeline.Imaging;
using Pipeline.Model.Vision;

namespace Pipeline.Actors.Actors;

/// <summary>
/// Turns a conversation's images into prompt rows: decode (PNG, JPEG, WebP), Gemma-4 preprocessing at
/// the default 280-token budget, then the vision tower and projector on the backend. One actor on the
/// kernel dispatcher (the tower's buffers are backend memory and every backend call holds
/// <see cref="PipelineModel.BackendGate"/>, so a pool would only queue on the gate). Stateless between
/// requests: a restarted instance reports the request it lost (<see cref="StageFailed"/>) and the
/// session resends it. An image that cannot be decoded is not a failure of the actor: it answers
/// <see cref="ImagesRejected"/> and the turn ends with that error.
/// </summary>
public sealed class VisionEncoderActor : PipelineActor
{
    private readonly PipelineModel _model;
    private Gemma4VisionEncoder? _encoder;

    public VisionEncoderActor(PipelineModel model, FaultInjector faults)
        : base(ActorRole.VisionEncoder, faults)
    {
        _model = model;
        Receive<EncodeImages>(OnEncode);
    }

    public static Props Props(PipelineModel model, PipelineSettings settings, FaultInjector faults) =>
        Akka.Actor.Props.Create(() => new VisionEncoderActor(model, faults)).WithDispatcher(settings.KernelDispatcher);

    protected override void PreStart()
    {
        lock (_model.BackendGate)
            _encoder = new Gemma4VisionEncoder(_model.Backend, _model.Checkpoint);
    }

    protected override void PostStop()
    {
        lock (_model.BackendGate)
            _encoder?.Dispose();
        _encoder = null;
    }

    private void OnEncode(EncodeImages m)
    {
        var vision = _model.Checkpoint.Vision!;
        var rows = new float[m.Images.Count][];
        for (int i = 0; i < m.Images.Count; i++)
        {
            string name = $"image {i + 1} of {m.Images.Count}";
            PreprocessedImage image;
            try
            {
                var data = m.Images[i].Data ?? throw new InvalidImageException($"{name} has no bytes");
                image = Gemma4ImageProcessor.Preprocess(ImageDecoder.Decode(data, name), vision);
            }
            catch (Exception e) when (e is InvalidImageException or ArgumentException)
            {
                Sender.Tell(new ImagesRejected(NewHeader(), m.SessionId, m.TurnId, m.Header.MessageId, e.Message));
                return;
            }
            lock (_model.BackendGate)
                rows[i] = _encoder!.EncodeToHost(image);   // [soft tokens, text hidden]
        }
        Sender.Tell(new ImagesEncoded(NewHeader(), m.SessionId, m.TurnId, m.Header.MessageId, rows));
    }
}
